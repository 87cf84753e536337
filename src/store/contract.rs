//! The contract every [`Backend`] must keep, as a test suite a backend's
//! tests call with a way to open an instance at a path (or on a database
//! named by it): opening twice for the same path must see the same data
//! once the first is dropped. Each check panics with what broke.

use std::path::Path;

use super::{Backend, BlobKind, Scan, StoreError, Table, WriteSet, be};

pub type Opener<'a> = &'a dyn Fn(&Path) -> Result<Box<dyn Backend>, StoreError>;
type Check = fn(&Path, Opener<'_>);

/// Runs every check, each in a fresh directory under `root`.
pub fn run(root: &Path, open: Opener<'_>) {
    let checks: &[(&str, Check)] = &[
        ("point reads and writes", point_reads_and_writes),
        ("later writes win", later_writes_win),
        ("tables are separate", tables_are_separate),
        ("scans are ordered and resumable", scans_are_ordered_and_resumable),
        ("blobs are content-addressed", blobs_are_content_addressed),
        ("blobs that do not match their name are refused", blobs_that_do_not_match_their_name_are_refused),
        ("empty values and binary keys are kept as they are", empty_values_and_binary_keys_are_kept),
        ("a blob written and deleted in one commit: the later write wins", a_blob_written_and_deleted_in_one_commit),
        ("a failed commit writes nothing", a_failed_commit_writes_nothing),
        ("commits survive a reopen", commits_survive_a_reopen),
        ("a second instance never writes beside the first", a_second_instance_never_writes_beside_the_first),
    ];
    for (i, (name, check)) in checks.iter().enumerate() {
        let dir = root.join(format!("check-{i}"));
        std::fs::create_dir_all(&dir).expect("contract: temp dir");
        eprintln!("store contract: {name}");
        check(&dir, open);
    }
}

fn opened(open: Opener<'_>, dir: &Path) -> Box<dyn Backend> {
    open(dir).unwrap_or_else(|e| panic!("contract: opening {}: {e}", dir.display()))
}

fn one(table: Table, k: &[u8], v: &[u8]) -> WriteSet {
    let mut w = WriteSet::default();
    w.put(table, k, v.to_vec());
    w
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn blob(kind: BlobKind, bytes: &[u8]) -> WriteSet {
    let mut w = WriteSet::default();
    w.put_blob(kind, &sha(bytes), bytes.to_vec());
    w
}

fn point_reads_and_writes(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    assert_eq!(b.get(Table::Tickets, b"k").unwrap(), None, "a missing key reads as None");
    b.commit(one(Table::Tickets, b"k", b"v1")).unwrap();
    assert_eq!(b.get(Table::Tickets, b"k").unwrap().as_deref(), Some(&b"v1"[..]));
    let mut w = WriteSet::default();
    w.delete(Table::Tickets, b"k");
    w.delete(Table::Tickets, b"never-there");
    b.commit(w).unwrap();
    assert_eq!(b.get(Table::Tickets, b"k").unwrap(), None, "deleted");
    b.commit(WriteSet::default()).unwrap();
    assert_eq!(b.count(Table::Tickets).unwrap(), 0);
}

fn later_writes_win(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    let mut w = WriteSet::default();
    w.put(Table::Meta, b"a", b"1".to_vec());
    w.put(Table::Meta, b"a", b"2".to_vec());
    w.put(Table::Meta, b"b", b"x".to_vec());
    w.delete(Table::Meta, b"b");
    w.delete(Table::Meta, b"c");
    w.put(Table::Meta, b"c", b"3".to_vec());
    b.commit(w).unwrap();
    assert_eq!(b.get(Table::Meta, b"a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(b.get(Table::Meta, b"b").unwrap(), None);
    assert_eq!(b.get(Table::Meta, b"c").unwrap().as_deref(), Some(&b"3"[..]));
}

fn tables_are_separate(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    let mut w = WriteSet::default();
    for t in Table::ALL {
        w.put(*t, b"same-key", t.name().as_bytes().to_vec());
    }
    b.commit(w).unwrap();
    for t in Table::ALL {
        assert_eq!(b.get(*t, b"same-key").unwrap().as_deref(), Some(t.name().as_bytes()), "{t:?}");
        assert_eq!(b.count(*t).unwrap(), 1, "{t:?}");
        let all: Vec<_> = b.scan(*t, Scan::default()).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 1, "a scan of {t:?} sees only its own keys");
    }
}

fn keys(b: &dyn Backend, scan: Scan) -> Vec<u64> {
    b.scan(Table::Tickets, scan).map(|r| super::from_be(&r.unwrap().0).unwrap()).collect()
}

fn scans_are_ordered_and_resumable(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    let mut w = WriteSet::default();
    for n in [300u64, 2, 1, 256, 70000, 3] {
        w.put(Table::Tickets, be(n), vec![n as u8]);
    }
    w.put(Table::Outbox, be(5), vec![0]);
    b.commit(w).unwrap();
    let b = b.as_ref();
    assert_eq!(keys(b, Scan::default()), vec![1, 2, 3, 256, 300, 70000], "big-endian keys scan in number order");
    assert_eq!(keys(b, Scan { reverse: true, ..Scan::default() }), vec![70000, 300, 256, 3, 2, 1]);
    assert_eq!(keys(b, Scan { after: Some(be(3).to_vec()), ..Scan::default() }), vec![256, 300, 70000]);
    assert_eq!(keys(b, Scan { after: Some(be(256).to_vec()), reverse: true, ..Scan::default() }), vec![3, 2, 1]);
    assert_eq!(
        keys(b, Scan { after: Some(be(4).to_vec()), ..Scan::default() }),
        vec![256, 300, 70000],
        "resumes after a key that is gone"
    );

    let mut w = WriteSet::default();
    for k in ["mb1\0a", "mb1\0b", "mb10\0a", "mb2\0a"] {
        w.put(Table::Ingested, k.as_bytes(), vec![1]);
    }
    b.commit(w).unwrap();
    let with_prefix: Vec<Vec<u8>> =
        b.scan(Table::Ingested, Scan { prefix: b"mb1\0".to_vec(), ..Scan::default() }).map(|r| r.unwrap().0).collect();
    assert_eq!(with_prefix, vec![b"mb1\0a".to_vec(), b"mb1\0b".to_vec()], "prefix scans stop at the prefix");
    let mut w = WriteSet::default();
    w.put(Table::Ingested, vec![0xff, 0xff], vec![1]);
    w.put(Table::Ingested, vec![0xff, 0xff, 0x01], vec![2]);
    b.commit(w).unwrap();
    let ff: Vec<_> = b.scan(Table::Ingested, Scan { prefix: vec![0xff, 0xff], ..Scan::default() }).collect();
    assert_eq!(ff.len(), 2, "a prefix of 0xff bytes has no successor and still works");
}

fn blobs_are_content_addressed(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    let hello = sha(b"hello");
    for kind in [BlobKind::Raw, BlobKind::Attachment] {
        assert_eq!(b.get_blob(kind, &hello).unwrap(), None);
        let mut w = blob(kind, b"hello");
        w.put_blob(kind, &hello, b"hello".to_vec());
        b.commit(w).unwrap();
        b.commit(blob(kind, b"hello")).unwrap();
        assert_eq!(b.get_blob(kind, &hello).unwrap().as_deref(), Some(&b"hello"[..]), "{kind:?}");
        assert_eq!(b.blob_range(kind, &hello, 1, 3).unwrap().as_deref(), Some(&b"ell"[..]), "{kind:?}");
        assert_eq!(b.blob_range(kind, &hello, 4, 10).unwrap().as_deref(), Some(&b"o"[..]), "{kind:?}");
    }
    let listed: Vec<(String, u64)> = b.blobs(BlobKind::Attachment).collect::<Result<_, _>>().unwrap();
    assert_eq!(listed, vec![(hello.clone(), 5)], "stored once, listed once");
    let mut w = WriteSet::default();
    w.delete_blob(BlobKind::Attachment, &hello);
    w.delete_blob(BlobKind::Attachment, &hello);
    b.commit(w).unwrap();
    assert_eq!(b.get_blob(BlobKind::Attachment, &hello).unwrap(), None, "deleted, and deleting twice is fine");
    assert!(b.get_blob(BlobKind::Raw, &hello).unwrap().is_some(), "the raw blob of the same hash stays");
    let big = vec![7u8; 3 << 20];
    let big_sha = sha(&big);
    b.commit(blob(BlobKind::Raw, &big)).unwrap();
    assert_eq!(b.get_blob(BlobKind::Raw, &big_sha).unwrap().map(|v| v.len()), Some(big.len()));
    let raws: Vec<String> = b.blobs(BlobKind::Raw).map(|r| r.unwrap().0).collect();
    let mut want = vec![hello, big_sha];
    want.sort();
    assert_eq!(raws, want, "in hash order");
}

fn blobs_that_do_not_match_their_name_are_refused(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    let named = sha(b"what the name promises");
    let mut w = WriteSet::default();
    w.put_blob(BlobKind::Attachment, &named, b"other bytes".to_vec());
    let err = b.commit(w).expect_err("bytes that do not hash to their name are never stored");
    assert!(matches!(err, StoreError::BlobMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&named), "the error names the blob: {err}");
    assert_eq!(b.get_blob(BlobKind::Attachment, &named).unwrap(), None);
}

/// The schedule tables hold empty values; keys are any bytes (big-endian
/// numbers are full of NULs and 0xff).
fn empty_values_and_binary_keys_are_kept(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    let keys: [&[u8]; 4] = [b"\0", b"\0\xff\0", b"\xff", b"\x7f\x80"];
    let mut w = WriteSet::default();
    for k in keys {
        w.put(Table::OutboxDue, k, Vec::new());
    }
    b.commit(w).unwrap();
    for k in keys {
        assert_eq!(b.get(Table::OutboxDue, k).unwrap(), Some(Vec::new()), "an empty value is not an absent one: {k:?}");
    }
    let all: Vec<Vec<u8>> = b.scan(Table::OutboxDue, Scan::default()).map(|r| r.unwrap().0).collect();
    assert_eq!(all, vec![b"\0".to_vec(), b"\0\xff\0".to_vec(), b"\x7f\x80".to_vec(), b"\xff".to_vec()], "byte order");
    assert_eq!(b.count(Table::OutboxDue).unwrap(), 4);
}

/// Staging a blob and forgetting it again (or the reverse, for a blob not
/// stored yet) in one write set: what the last write says is what is kept.
fn a_blob_written_and_deleted_in_one_commit(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    let (gone, kept) = (&b"staged, then dropped"[..], &b"dropped, then staged"[..]);
    let mut w = blob(BlobKind::Attachment, gone);
    w.delete_blob(BlobKind::Attachment, &sha(gone));
    w.delete_blob(BlobKind::Attachment, &sha(kept));
    w.put_blob(BlobKind::Attachment, &sha(kept), kept.to_vec());
    b.commit(w).unwrap();
    assert_eq!(b.get_blob(BlobKind::Attachment, &sha(gone)).unwrap(), None);
    assert_eq!(b.get_blob(BlobKind::Attachment, &sha(kept)).unwrap().as_deref(), Some(kept));
    let listed: Vec<String> = b.blobs(BlobKind::Attachment).map(|r| r.unwrap().0).collect();
    assert_eq!(listed, vec![sha(kept)]);
    // A committed blob deleted and staged again in one set stays.
    let mut w = WriteSet::default();
    w.delete_blob(BlobKind::Attachment, &sha(kept));
    w.put_blob(BlobKind::Attachment, &sha(kept), kept.to_vec());
    b.commit(w).unwrap();
    assert_eq!(b.get_blob(BlobKind::Attachment, &sha(kept)).unwrap().as_deref(), Some(kept), "the put came last");
}

/// All or nothing: a commit refused for one of its blobs leaves no record
/// and no other blob of it behind; the next commit goes on as if it never
/// happened.
fn a_failed_commit_writes_nothing(dir: &Path, open: Opener<'_>) {
    let b = opened(open, dir);
    b.commit(one(Table::Meta, b"counter", b"1")).unwrap();
    let good = b"an attachment of the failed commit";
    let mut w = blob(BlobKind::Attachment, good);
    w.put(Table::Meta, b"counter", b"2".to_vec());
    w.put(Table::Tickets, be(1), b"a ticket".to_vec());
    w.delete(Table::Meta, b"counter-old");
    w.put_blob(BlobKind::Raw, &sha(b"the name"), b"not the content".to_vec());
    assert!(b.commit(w).is_err());
    assert_eq!(b.get(Table::Meta, b"counter").unwrap().as_deref(), Some(&b"1"[..]), "no record changed");
    assert_eq!(b.get(Table::Tickets, &be(1)).unwrap(), None, "no record added");
    assert_eq!(b.get_blob(BlobKind::Attachment, &sha(good)).unwrap(), None, "no blob of it stored");
    assert_eq!(b.blobs(BlobKind::Attachment).count(), 0);
    b.commit(one(Table::Meta, b"counter", b"2")).unwrap();
    b.commit(blob(BlobKind::Attachment, good)).unwrap();
    assert_eq!(b.get_blob(BlobKind::Attachment, &sha(good)).unwrap().as_deref(), Some(&good[..]));
}

fn commits_survive_a_reopen(dir: &Path, open: Opener<'_>) {
    let (att, raw) = (sha(b"attached"), sha(b"raw mail"));
    {
        let b = opened(open, dir);
        let mut w = one(Table::Cursors, b"support", b"{}");
        w.put_blob(BlobKind::Attachment, &att, b"attached".to_vec());
        w.put_blob(BlobKind::Raw, &raw, b"raw mail".to_vec());
        b.commit(w).unwrap();
    }
    let b = opened(open, dir);
    assert_eq!(b.get(Table::Cursors, b"support").unwrap().as_deref(), Some(&b"{}"[..]));
    assert_eq!(b.get_blob(BlobKind::Attachment, &att).unwrap().as_deref(), Some(&b"attached"[..]));
    assert_eq!(b.get_blob(BlobKind::Raw, &raw).unwrap().as_deref(), Some(&b"raw mail"[..]));
    assert!(b.size_on_disk().unwrap() > 0);
}

/// Two instances on one store: either the second cannot open it while the
/// first lives (sled: one process), or once the second writes, every commit
/// of the first is refused as fenced and writes nothing (a database shared
/// by nodes: the newer writer wins, the deposed one can never land a write).
fn a_second_instance_never_writes_beside_the_first(dir: &Path, open: Opener<'_>) {
    let first = opened(open, dir);
    first.commit(one(Table::Meta, b"who", b"first")).unwrap();
    match open(dir) {
        Err(StoreError::Locked(_)) => {
            first.commit(one(Table::Meta, b"who", b"still first")).unwrap();
        }
        Err(e) => panic!("a second open fails only because the store is taken: {e}"),
        Ok(second) => {
            assert_eq!(second.get(Table::Meta, b"who").unwrap().as_deref(), Some(&b"first"[..]), "same data");
            second.commit(one(Table::Meta, b"who", b"second")).unwrap();
            let mut w = one(Table::Meta, b"who", b"deposed");
            w.put(Table::Tickets, be(9), b"x".to_vec());
            let err = first.commit(w).expect_err("the deposed writer's commit is refused");
            assert!(matches!(err, StoreError::Fenced(_)), "{err}");
            assert_eq!(second.get(Table::Meta, b"who").unwrap().as_deref(), Some(&b"second"[..]));
            assert_eq!(second.get(Table::Tickets, &be(9)).unwrap(), None, "nothing of it landed");
        }
    }
}
