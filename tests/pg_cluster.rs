//! The PostgreSQL backend's lease, fence, TLS, probe and failure cases,
//! against a private PostgreSQL started by `scripts/pg-lab.sh` (one per
//! test binary, shared by the tests that do not restart it).

#[path = "../src/store/postgres/lab.rs"]
mod pg_lab;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use pg_lab::PgLab;
use ticketd::store::postgres::{HeartbeatError, PgSettings, PostgresBackend, probe};
use ticketd::store::{Backend, Get, StoreError, Table, WriteSet};

fn node(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

fn settings(url: &str, node: &str) -> PgSettings {
    PgSettings::from_url(url, node).unwrap().with_lease_timeout(Duration::from_secs(2))
}

fn open(lab: &PgLab, db: &str, name: &str) -> PostgresBackend {
    PostgresBackend::open(settings(&lab.url(db), name)).unwrap()
}

fn one(k: &str, v: &str) -> WriteSet {
    let mut w = WriteSet::default();
    w.put(Table::Meta, k.as_bytes(), v.as_bytes().to_vec());
    w
}

/// Takes the lease within `within`, retrying while it is not free yet.
fn lead_within(b: &PostgresBackend, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(lease) = b.try_lease().unwrap() {
            let epoch = lease.epoch();
            b.lead(lease);
            return epoch;
        }
        assert!(Instant::now() < deadline, "the lease did not come free within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_racing_for_the_lease_get_exactly_one_winner() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("race").unwrap();
    open(&lab, &db, "setup");
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (lab.url(&db), barrier.clone());
            std::thread::spawn(move || {
                let b = PostgresBackend::open(settings(&url, &node("race"))).unwrap();
                barrier.wait();
                let lease = b.try_lease().unwrap();
                let won = lease.as_ref().map(|l| l.epoch());
                // Hold on until everyone has tried.
                barrier.wait();
                won
            })
        })
        .collect();
    let won: Vec<u64> = handles.into_iter().filter_map(|h| h.join().unwrap()).collect();
    assert_eq!(won, vec![1], "exactly one node took the lease, at epoch 1");
}

#[test]
fn a_terminated_holder_is_replaced_at_a_higher_epoch_and_its_commits_are_refused() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("terminate").unwrap();
    let (na, nb) = (node("a"), node("b"));
    let a = open(&lab, &db, &na);
    let b = open(&lab, &db, &nb);
    let e1 = lead_within(&a, Duration::from_secs(5));
    a.commit(one("who", "a")).unwrap();
    assert!(b.try_lease().unwrap().is_none(), "taken");
    assert_eq!(lab.terminate(&format!("ticketd/{na}/lease")).unwrap(), 1);
    let lost = a.lease().unwrap().heartbeat().unwrap_err();
    assert!(matches!(lost, HeartbeatError::Lost(_)), "{lost}");
    let e2 = lead_within(&b, Duration::from_secs(5));
    assert_eq!(e2, e1 + 1);
    let err = a.commit(one("who", "a again")).unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    assert!(err.to_string().contains(&format!("held by {nb}")), "{err}");
    b.commit(one("who", "b")).unwrap();
    assert_eq!(a.get(Table::Meta, b"who").unwrap().as_deref(), Some(&b"b"[..]), "the deposed node still reads");
    let info = a.leader().unwrap();
    assert_eq!((info.node.as_deref(), info.epoch, info.held), (Some(nb.as_str()), e2, true));
}

/// A leader's writer caught mid-commit (paused while holding its share lock
/// on the lease row) does not block the takeover: deposing ends it.
#[test]
fn a_takeover_is_not_blocked_by_the_old_writer_mid_transaction() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("midtx").unwrap();
    let (na, nb) = (node("a"), node("b"));
    let a = open(&lab, &db, &na);
    let b = open(&lab, &db, &nb);
    let e1 = lead_within(&a, Duration::from_secs(5));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut cfg: tokio_postgres::Config = lab.url(&db).parse().unwrap();
    cfg.application_name(format!("ticketd/{na}/writer"));
    let stuck = rt.block_on(async {
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("BEGIN; SELECT ticketd_fence({e1})")).await.unwrap();
        client
    });
    // A commit holding the lease row does not hold up the heartbeat.
    let beat = Instant::now();
    a.lease().unwrap().heartbeat().unwrap();
    assert!(beat.elapsed() < Duration::from_millis(400), "heartbeat took {:?}", beat.elapsed());
    let t0 = Instant::now();
    let deposed = b.depose_stale(Duration::ZERO).unwrap().expect("a holder to depose");
    assert_eq!((deposed.node.as_deref(), deposed.epoch), (Some(na.as_str()), e1));
    assert!(deposed.sessions >= 2, "its lock session and its writer's: {deposed:?}");
    let e2 = lead_within(&b, Duration::from_secs(5));
    assert_eq!(e2, e1 + 1);
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
    b.commit(one("who", "b")).unwrap();
    let r = rt.block_on(stuck.batch_execute("COMMIT"));
    assert!(r.is_err(), "the old writer's session was ended");
    assert!(matches!(a.commit(one("who", "a")).unwrap_err(), StoreError::Fenced(_)));
}

/// When the environment names a database, this "test" is the paused
/// holder of `a_paused_holder_is_deposed_by_database_time`: it leads,
/// beats every 200 ms and tries a commit after each beat, reporting on
/// stdout, until both are refused.
#[test]
fn paused_holder_helper() {
    let Ok(url) = std::env::var("TICKETD_PG_HELPER_URL") else { return };
    let node = std::env::var("TICKETD_PG_HELPER_NODE").unwrap();
    let b = PostgresBackend::open(settings(&url, &node)).unwrap();
    let epoch = lead_within(&b, Duration::from_secs(5));
    println!("HELPER EPOCH {epoch}");
    let lease = b.lease().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut lost, mut fenced) = (false, false);
    let mut n = 0;
    while !(lost && fenced) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        n += 1;
        match lease.heartbeat() {
            Ok(()) => println!("HELPER BEAT ok"),
            Err(HeartbeatError::Lost(why)) => {
                lost = true;
                println!("HELPER LOST {why}");
            }
            Err(e) => println!("HELPER BEAT {e}"),
        }
        match b.commit(one(&format!("helper-{n}"), "x")) {
            Ok(()) => println!("HELPER COMMIT ok {n}"),
            Err(StoreError::Fenced(why)) => {
                fenced = true;
                println!("HELPER FENCED {why}");
            }
            Err(e) => println!("HELPER COMMIT {e}"),
        }
    }
    println!("HELPER DONE");
}

/// The helper process; continued and killed when dropped.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGCONT);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn next_line(rx: &mpsc::Receiver<String>, prefix: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // libtest may print "test name ... " in front of the first line.
            Ok(l) => {
                if let Some(i) = l.find(prefix) {
                    return l[i..].to_owned();
                }
            }
            Err(e) => panic!("no line {prefix:?} from the helper within {within:?}: {e}"),
        }
    }
}

#[test]
fn a_paused_holder_is_deposed_by_database_time_and_fenced_when_it_resumes() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("paused").unwrap();
    let standby = open(&lab, &db, &node("standby"));
    let held = node("held");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "paused_holder_helper", "--nocapture", "--test-threads=1"])
        .env("TICKETD_PG_HELPER_URL", lab.url(&db))
        .env("TICKETD_PG_HELPER_NODE", &held)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let helper = Helper(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let epoch: u64 = next_line(&rx, "HELPER EPOCH", Duration::from_secs(20))[13..].trim().parse().unwrap();
    next_line(&rx, "HELPER COMMIT ok", Duration::from_secs(5));
    let timeout = Duration::from_millis(1500);
    assert_eq!(standby.depose_stale(timeout).unwrap(), None, "a beating holder is left alone");

    signal(&helper.0, libc::SIGSTOP);
    let stopped = Instant::now();
    // Nothing moves the lock now: only the heartbeat's age, by the database's clock.
    let deposed = loop {
        if let Some(d) = standby.depose_stale(timeout).unwrap() {
            break d;
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "never deposed");
        std::thread::sleep(Duration::from_millis(100));
    };
    let waited = stopped.elapsed();
    assert_eq!((deposed.node.as_deref(), deposed.epoch), (Some(held.as_str()), epoch));
    assert!(deposed.heartbeat_age.unwrap() > timeout, "{deposed:?}");
    assert!(waited > Duration::from_millis(1000) && waited < Duration::from_secs(4), "deposed after {waited:?}");
    let e2 = lead_within(&standby, Duration::from_secs(5));
    assert_eq!(e2, epoch + 1);
    standby.commit(one("who", "standby")).unwrap();
    let before = standby.count(Table::Meta).unwrap();

    signal(&helper.0, libc::SIGCONT);
    let lost = next_line(&rx, "HELPER LOST", Duration::from_secs(10));
    let fenced = next_line(&rx, "HELPER FENCED", Duration::from_secs(10));
    assert!(fenced.contains(&format!("epoch {e2}")), "{lost} / {fenced}");
    next_line(&rx, "HELPER DONE", Duration::from_secs(10));
    assert_eq!(standby.count(Table::Meta).unwrap(), before, "nothing of the resumed holder landed");
    eprintln!("paused holder deposed {waited:?} after SIGSTOP (lease timeout {timeout:?})");
}

#[test]
fn tls_verifies_the_servers_certificate_and_name() {
    let lab = PgLab::shared().unwrap();
    let ca = lab.ca.display().to_string();
    let other = lab.other_ca.display().to_string();
    let ok = PgSettings::from_url(&lab.url_with("localhost", "postgres", &format!("sslrootcert={ca}")), "tls").unwrap();
    assert!(ok.tls());
    let report = probe::probe(&ok).unwrap();
    assert!(report.tls, "{report}");
    let refused = |query: String, host: &str| {
        let s = PgSettings::from_url(&lab.url_with(host, "postgres", &query), "tls").unwrap();
        let err = probe::probe(&s).expect_err("must not connect").to_string();
        eprintln!("{host} with {query:?}: {err}");
        err
    };
    let err = refused(format!("sslrootcert={other}"), "localhost");
    assert!(err.contains("certificate"), "a certificate from an unknown CA: {err}");
    let err = refused(format!("sslrootcert={ca}"), "127.0.0.1");
    assert!(err.contains("certificate") || err.contains("name"), "a name the certificate does not carry: {err}");
    let err = refused(String::new(), "localhost");
    assert!(err.contains("certificate"), "by default only public CAs are trusted: {err}");
    assert!(!err.contains(&lab.password), "never the password: {err}");
}

#[test]
fn the_probe_reports_version_writability_and_a_direct_connection() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("probe").unwrap();
    let s = PgSettings::from_url(&lab.url(&db), "probe").unwrap();
    let report = probe::probe(&s).unwrap();
    assert!(report.ok(), "{report}");
    assert!(report.version_num >= 130000 && report.server_version.starts_with(char::is_numeric), "{report}");
    assert_eq!(report.schema, None);
    PostgresBackend::open(s.clone()).unwrap();
    assert_eq!(probe::probe(&s).unwrap().schema, Some(ticketd::store::postgres::schema::VERSION));
    lab.psql(&format!("ALTER DATABASE {db} SET default_transaction_read_only = on")).unwrap();
    let report = probe::probe(&s).unwrap();
    assert!(!report.ok() && report.problems[0].contains("read-only"), "{report}");
    let err = probe::probe(
        &PgSettings::from_url(
            &format!("postgres://ticketd:wrong@127.0.0.1:{}/{db}?sslmode=disable", lab.port),
            "probe",
        )
        .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("password authentication failed") && !err.contains("wrong@"), "{err}");
}

/// A TCP relay to PostgreSQL that, once armed, forwards the client's
/// `COMMIT` and then cuts both sides without relaying the answer.
struct CutAtCommit {
    port: u16,
    armed: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

fn cut_at_commit(upstream: u16) -> CutAtCommit {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let arm = armed.clone();
    rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let arm = arm.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let back = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if arm.load(Ordering::SeqCst) && buf[..n].windows(7).any(|w| w == b"COMMIT\0") {
                        arm.store(false, Ordering::SeqCst);
                        let _ = sw.flush().await;
                        break;
                    }
                }
                back.abort();
            });
        }
    });
    CutAtCommit { port, armed, _rt: rt }
}

#[test]
fn a_commit_cut_off_at_commit_is_in_doubt_and_its_replay_is_a_no_op() {
    let lab = PgLab::shared().unwrap();
    let db = lab.fresh_db("indoubt").unwrap();
    let proxy = cut_at_commit(lab.port);
    let url = format!("postgres://{}:{}@127.0.0.1:{}/{db}?sslmode=disable", lab.user, lab.password, proxy.port);
    let b = PostgresBackend::open(settings(&url, &node("doubt"))).unwrap();
    lead_within(&b, Duration::from_secs(5));
    b.commit(one("before", "1")).unwrap();
    let mut w = one("cut", "at commit");
    w.put(Table::Tickets, 1u64.to_be_bytes(), b"ticket".to_vec());
    proxy.armed.store(true, Ordering::SeqCst);
    let err = b.commit(w.clone()).unwrap_err();
    assert!(matches!(err, StoreError::InDoubt(_)), "{err}");
    assert!(!proxy.armed.load(Ordering::SeqCst), "the cut happened");
    // Here the server got COMMIT whole, so it landed; the writer cannot
    // know that, treats it as not done, and replays.
    let count = b.count(Table::Meta).unwrap();
    b.commit(w).unwrap();
    assert_eq!(b.count(Table::Meta).unwrap(), count, "the replay changed nothing");
    assert_eq!(b.get(Table::Meta, b"cut").unwrap().as_deref(), Some(&b"at commit"[..]));
    assert_eq!(b.get(Table::Tickets, &1u64.to_be_bytes()).unwrap().as_deref(), Some(&b"ticket"[..]));
}

#[test]
fn a_postgres_restart_ends_the_lease_and_the_next_leader_fences_the_old_one() {
    // A server of its own: the restart must not disturb the other tests.
    let lab = PgLab::start().unwrap();
    eprintln!("private PostgreSQL started in {:.2} s", lab.start_seconds);
    let db = lab.fresh_db("restart").unwrap();
    let a = open(&lab, &db, &node("a"));
    let e1 = lead_within(&a, Duration::from_secs(5));
    a.commit(one("who", "a")).unwrap();
    let t0 = Instant::now();
    lab.crash().unwrap();
    let lost = a.lease().unwrap().heartbeat().unwrap_err();
    assert!(matches!(lost, HeartbeatError::Lost(_)), "{lost}");
    let down = a.commit(one("who", "during")).unwrap_err();
    assert!(matches!(down, StoreError::Io { .. }), "{down}");
    lab.restart().unwrap();
    eprintln!("crash and restart took {:?}", t0.elapsed());
    assert_eq!(a.get(Table::Meta, b"who").unwrap().as_deref(), Some(&b"a"[..]), "reads come back by themselves");
    let b = open(&lab, &db, &node("b"));
    let e2 = lead_within(&b, Duration::from_secs(5));
    assert_eq!(e2, e1 + 1, "the epoch survives the restart and moves on");
    assert!(matches!(a.commit(one("who", "old")).unwrap_err(), StoreError::Fenced(_)));
    b.commit(one("who", "b")).unwrap();
    assert_eq!(a.get(Table::Meta, b"who").unwrap().as_deref(), Some(&b"b"[..]));
}
