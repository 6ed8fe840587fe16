//! Journal archives on disk: roll-over by size and by age, the close hook, a torn final
//! file, an archiver killed mid-run, a corrupt file. The journal comes from the memory
//! backend (the conformance suite runs restore on every real store).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_core::archive::{ArchiveError, ArchiveOptions, Archiver, ClosedFile, read_archive};
use durable_core::journal::read_all;
use durable_core::{Backend, Bytes, JournalItem, MemoryBackend, MemoryStore};

fn journaled() -> MemoryBackend {
    MemoryBackend::in_store(MemoryStore::new(), "archive")
}

async fn write(backend: &MemoryBackend, from: u32, to: u32) {
    for i in from..to {
        let value = Bytes::from(format!("{{\"n\": {i}, \"pad\": \"{}\"}}", "x".repeat((i % 13) as usize)));
        backend.persist(&format!("key-{}", i % 17), value).await.unwrap();
    }
}

fn archived(dir: &std::path::Path) -> Vec<JournalItem> {
    read_archive(dir).unwrap().collect::<Result<_, _>>().unwrap()
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn files_roll_over_by_size_and_read_back_in_version_order() {
    let backend = journaled();
    let dir = tempfile::tempdir().unwrap();
    let closed = Arc::new(Mutex::new(Vec::<ClosedFile>::new()));
    let hook = Arc::clone(&closed);
    let options =
        ArchiveOptions::default().max_file_bytes(400).on_close(move |file| hook.lock().unwrap().push(file.clone()));
    let mut archiver = Archiver::open(dir.path(), options).unwrap();
    for round in 0..10 {
        write(&backend, round * 20, round * 20 + 20).await;
        archiver.drain(&backend).await.unwrap();
    }
    let closed = closed.lock().unwrap().clone();
    assert!(closed.len() >= 5, "{} files closed", closed.len());
    for pair in closed.windows(2) {
        assert_eq!(pair[1].first, pair[0].last + 1, "files follow each other");
    }
    for file in &closed {
        assert!(file.path.exists() && file.bytes > 0 && file.items > 0, "{file:?}");
    }
    assert_eq!(archived(dir.path()), read_all(&backend, 0).await.unwrap(), "the archive is the journal");
    assert_eq!(archiver.after(), 200);
}

#[tokio::test]
async fn files_roll_over_by_age() {
    let backend = journaled();
    let dir = tempfile::tempdir().unwrap();
    let options = ArchiveOptions::default().max_file_age(Duration::from_millis(100));
    let mut archiver = Archiver::open(dir.path(), options).unwrap();
    write(&backend, 0, 10).await;
    archiver.drain(&backend).await.unwrap();
    assert_eq!(files(dir.path()), ["journal-00000000000000000001.open"], "young: still open");
    tokio::time::sleep(Duration::from_millis(150)).await;
    write(&backend, 10, 20).await;
    archiver.drain(&backend).await.unwrap();
    assert_eq!(files(dir.path()), ["journal-00000000000000000001-00000000000000000020.lz4"], "old: closed");
    write(&backend, 20, 25).await;
    archiver.drain(&backend).await.unwrap();
    assert_eq!(files(dir.path()).len(), 2);
    assert_eq!(archived(dir.path()), read_all(&backend, 0).await.unwrap());
}

/// A crash can cut the open file anywhere: whatever the cut, reading gives a prefix of
/// what was written (never a misread item), reopening recovers it, and the next drain
/// brings the archive back to the whole journal — nothing lost, nothing doubled.
#[tokio::test]
async fn a_torn_final_file_is_recovered_at_every_cut() {
    let backend = journaled();
    write(&backend, 0, 60).await;
    let whole = read_all(&backend, 0).await.unwrap();
    let source = tempfile::tempdir().unwrap();
    let mut archiver = Archiver::open(source.path(), ArchiveOptions::default()).unwrap();
    archiver.drain(&backend).await.unwrap();
    drop(archiver); // killed: the file stays open
    let [name] = &files(source.path())[..] else { panic!("one open file") };
    let bytes = std::fs::read(source.path().join(name)).unwrap();
    for cut in (0..bytes.len()).step_by(5).chain([bytes.len()]) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), &bytes[..cut]).unwrap();
        let read = archived(dir.path());
        assert_eq!(read[..], whole[..read.len()], "cut at {cut}: a prefix");
        let mut archiver = Archiver::open(dir.path(), ArchiveOptions::default()).unwrap();
        assert!(files(dir.path()).iter().all(|name| name.ends_with(".lz4")), "cut at {cut}: recovered and closed");
        assert_eq!(archiver.after() as usize, read.len(), "cut at {cut}: resumes after the last whole item");
        archiver.drain(&backend).await.unwrap();
        assert_eq!(archived(dir.path()), whole, "cut at {cut}: whole again");
    }
}

#[tokio::test]
async fn an_archiver_killed_mid_run_resumes_with_nothing_lost_or_doubled() {
    let backend = journaled();
    let dir = tempfile::tempdir().unwrap();
    for run in 0..4 {
        let mut archiver = Archiver::open(dir.path(), ArchiveOptions::default().max_file_bytes(300)).unwrap();
        write(&backend, run * 30, run * 30 + 15).await;
        archiver.drain(&backend).await.unwrap();
        write(&backend, run * 30 + 15, run * 30 + 30).await;
        // Killed before it drains again.
    }
    let mut archiver = Archiver::open(dir.path(), ArchiveOptions::default()).unwrap();
    archiver.drain(&backend).await.unwrap();
    let items = archived(dir.path());
    assert_eq!(items, read_all(&backend, 0).await.unwrap());
    assert_eq!(items.len(), 120);
}

/// A closed file damaged anywhere (a byte flipped at every place in turn) never reads as
/// different items: what it yields is a prefix of what was written, and whatever is missing
/// is reported as `Corrupt`.
#[tokio::test]
async fn a_damaged_closed_file_is_an_error_never_a_misread() {
    let backend = journaled();
    write(&backend, 0, 40).await;
    let whole = read_all(&backend, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut archiver = Archiver::open(dir.path(), ArchiveOptions::default()).unwrap();
    archiver.drain(&backend).await.unwrap();
    let closed = archiver.close_file().unwrap().expect("a file");
    let pristine = std::fs::read(&closed.path).unwrap();
    let mut reported = 0;
    for place in 0..pristine.len() {
        let mut bytes = pristine.clone();
        bytes[place] ^= 0x5a;
        std::fs::write(&closed.path, bytes).unwrap();
        let read: Vec<Result<JournalItem, ArchiveError>> = read_archive(dir.path()).unwrap().collect();
        let good: Vec<&JournalItem> = read.iter().map_while(|item| item.as_ref().ok()).collect();
        assert_eq!(good[..], whole.iter().collect::<Vec<_>>()[..good.len()], "flipped at {place}: a prefix");
        if good.len() < whole.len() {
            let damage = read.get(good.len()).expect("what is missing is reported");
            assert!(matches!(damage, Err(ArchiveError::Corrupt { .. })), "flipped at {place}: {damage:?}");
            reported += 1;
        }
    }
    assert!(reported > pristine.len() / 2, "most flips damage the items: {reported} of {}", pristine.len());
}
