//! Store commit throughput, sled against PostgreSQL (not a timed test):
//! write sets of 64 records (about 400 bytes each, as a group of ingested
//! mail writes) plus one 8 KiB raw-mail blob, committed one after the
//! other by one writer, as the desk's writer does. PostgreSQL is a private
//! server on this machine (`scripts/pg-lab.sh`) with fsync on, so both
//! stores make each commit durable. Prints commits/s and records/s.
//!
//! `cargo bench --bench store` commits 1,000 write sets per store;
//! `TICKETD_BENCH_COMMITS` changes that. Under `cargo test` it is a small
//! smoke run.

#[path = "../src/store/postgres/lab.rs"]
mod pg_lab;

use std::time::{Duration, Instant};

use ticketd::store::postgres::{PgSettings, PostgresBackend};
use ticketd::store::sled_backend::SledBackend;
use ticketd::store::{Backend, BlobKind, Table, WriteSet};

fn write_set(n: u64) -> WriteSet {
    let mut w = WriteSet::default();
    for i in 0..64u64 {
        let key = (n * 64 + i).to_be_bytes();
        w.put(Table::Ingested, key, vec![b'x'; 400]);
    }
    let raw: Vec<u8> = (0..8192u64).map(|i| ((i * 31 + n) % 251) as u8).collect();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw));
    w.put_blob(BlobKind::Raw, &sha, raw);
    w
}

fn run(name: &str, b: &dyn Backend, commits: u64) -> (f64, Duration) {
    let sets: Vec<WriteSet> = (0..commits).map(write_set).collect();
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    for w in sets {
        let c = Instant::now();
        b.commit(w).unwrap();
        worst = worst.max(c.elapsed());
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(b.count(Table::Ingested).unwrap(), commits * 64);
    let rate = commits as f64 / secs;
    println!(
        "{name:>10}: {commits} commits in {secs:.2} s: {rate:.0} commits/s, {:.0} records/s, slowest commit {:.1} ms",
        rate * 64.0,
        worst.as_secs_f64() * 1e3
    );
    (rate, worst)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let commits: u64 = std::env::var("TICKETD_BENCH_COMMITS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full {
        1000
    } else {
        30
    });
    let dir = tempfile::tempdir().unwrap();
    let sled = SledBackend::open(&dir.path().join("db"), &dir.path().join("att"), 64 << 20).unwrap();
    let (sled_rate, _) = run("sled", &sled, commits);
    drop(sled);

    let lab = pg_lab::PgLab::start_durable().unwrap();
    let db = lab.fresh_db("bench").unwrap();
    let settings = PgSettings::from_url(&lab.url(&db), "bench").unwrap();
    let pg = PostgresBackend::open(settings).unwrap();
    pg.lead(pg.try_lease().unwrap().expect("the lease is free"));
    let (pg_rate, _) = run("postgresql", &pg, commits);
    println!("postgresql/sled: {:.2}", pg_rate / sled_rate);
}
