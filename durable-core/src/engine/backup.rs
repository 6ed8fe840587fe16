//! The local backup file ([`Builder::backup_file`](crate::Builder::backup_file)): the last
//! snapshot on disk, so that a service whose store is unreachable when it starts serves its
//! last known flags instead of failing to start — as Unleash's SDKs do.
//!
//! After every change to the snapshot (a sync that changed something, or a local write) a
//! background task writes the whole snapshot to a temporary file beside `<path>`, syncs it
//! to disk, renames it over `<path>` and syncs the directory, so the file is always one whole
//! snapshot, even after a crash or a power cut. Changes that arrive while a write is under
//! way are folded into the next write.
//!
//! The format (all integers little-endian):
//!
//! ```text
//! "DURABLE-BACKUP\n" (15 bytes)  format (u8, = 1)  version (u64)  entries (u64)
//! per entry: key length (u32), key (UTF-8), value length (u32), value (the dict's codec)
//! CRC-32 of everything before it (u32)
//! ```
//!
//! A file that is truncated, corrupt, of another format, or whose values the dict's codec
//! cannot decode is ignored with a warning: never trusted, never a crash.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use thiserror::Error as ThisError;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::backend::{Durables, Version};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::snapshot::SnapshotData;

use super::Engine;

const MAGIC: &[u8] = b"DURABLE-BACKUP\n";
const FORMAT: u8 = 1;
const HEADER: usize = MAGIC.len() + 1 + 8 + 8;

/// Why a backup file was not used.
#[derive(Debug, ThisError)]
#[allow(missing_docs)] // the fields say what they are
pub enum BackupError {
    /// The file could not be read (a missing file included).
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Not a backup file, or one of a format this version does not read.
    #[error("{} is not a durable backup file (format {format})", path.display())]
    Format { path: PathBuf, format: String },
    /// Truncated, corrupt, or forged.
    #[error("{} is truncated or corrupt: {what}", path.display())]
    Corrupt { path: PathBuf, what: &'static str },
    /// A value the dict's codec cannot decode (written with another codec?).
    #[error("{}: the value of {key:?} cannot be decoded: {reason}", path.display())]
    Undecodable { path: PathBuf, key: String, reason: String },
}

/// Encodes a snapshot's entries (already encoded with the dict's codec).
pub(crate) fn encode<'a>(version: Version, entries: impl ExactSizeIterator<Item = (&'a str, Bytes)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + entries.len() * 32 + 4);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (key, value) in entries {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(&value);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a backup file's bytes (as [`read_backup`] does after reading the file; `path`
/// only names it in errors). Never panics and never allocates more than the input
/// justifies, whatever the bytes; fuzzed by `fuzz/fuzz_targets/backup.rs`.
pub fn decode_backup(path: &Path, bytes: &[u8]) -> Result<Durables, BackupError> {
    let corrupt = |what| BackupError::Corrupt { path: path.to_owned(), what };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(BackupError::Format { path: path.to_owned(), format: "unknown".into() });
    }
    if bytes.len() < HEADER + 4 {
        return Err(corrupt("shorter than its header"));
    }
    if bytes[MAGIC.len()] != FORMAT {
        return Err(BackupError::Format { path: path.to_owned(), format: bytes[MAGIC.len()].to_string() });
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch"));
    }
    let mut reader = Reader { rest: &body[MAGIC.len() + 1..] };
    let version = reader.u64().ok_or_else(|| corrupt("no version"))?;
    let count = reader.u64().ok_or_else(|| corrupt("no entry count"))?;
    // Every entry takes at least 8 bytes: a count beyond that is a lie, not an allocation.
    if count > (reader.rest.len() / 8) as u64 {
        return Err(corrupt("entry count larger than the file"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key = reader.chunk().ok_or_else(|| corrupt("entry cut short"))?;
        let key = std::str::from_utf8(key).map_err(|_| corrupt("a key is not UTF-8"))?;
        let value = reader.chunk().ok_or_else(|| corrupt("entry cut short"))?;
        entries.push((key.to_owned(), Bytes::copy_from_slice(value)));
    }
    if !reader.rest.is_empty() {
        return Err(corrupt("bytes after the last entry"));
    }
    Ok(Durables { entries, version })
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
}

/// Reads a backup file (see the [module docs](crate::Builder::backup_file)): its version and
/// its entries, values still encoded with the codec of the dict that wrote it. For tools
/// and tests; a dict reads its own file by itself.
pub fn read_backup(path: &Path) -> Result<Durables, BackupError> {
    let bytes = std::fs::read(path).map_err(|source| BackupError::Io { path: path.to_owned(), source })?;
    decode_backup(path, &bytes)
}

/// Reads and decodes the backup at `path`, off the async threads.
pub(crate) async fn read(path: PathBuf) -> Result<Durables, BackupError> {
    tokio::task::spawn_blocking(move || read_backup(&path)).await.unwrap_or_else(|join| {
        Err(BackupError::Io { path: PathBuf::new(), source: std::io::Error::other(join.to_string()) })
    })
}

/// Writes `bytes` to `path` durably and atomically; see [`write_steps`].
pub(crate) async fn write(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || write_steps(&path, &bytes, |_| false))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())))
}

/// The steps of a backup write, in order; a crash between any two leaves `path` holding
/// either the old whole file or the new whole file, never a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A temporary file made beside `path` (same directory, so the rename stays on one file
    /// system): `.<name>.<random>.tmp`.
    Created,
    /// Half of the bytes written.
    HalfWritten,
    /// Every byte written, not yet synced.
    Written,
    /// The file's data synced to disk (`fsync`).
    Synced,
    /// Renamed over `path` (`rename` is atomic on POSIX file systems).
    Renamed,
    /// The directory synced, so the rename itself survives a power cut.
    DirectorySynced,
}

/// Writes `bytes` to `path`: a temporary file beside it, written, synced, renamed over
/// `path`, then the directory synced. `stop_after` lets a test stop the write after a step as
/// a crash would — the temporary file is then left behind, as a killed process leaves it.
fn write_steps(path: &Path, bytes: &[u8], stop_after: impl Fn(Step) -> bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let mut file = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    let half = bytes.len() / 2;
    for step in [Step::Created, Step::HalfWritten, Step::Written, Step::Synced] {
        match step {
            Step::HalfWritten => file.write_all(&bytes[..half])?,
            Step::Written => file.write_all(&bytes[half..])?,
            Step::Synced => file.as_file().sync_all()?,
            _ => {}
        }
        if stop_after(step) {
            // A crash runs no destructor: the temporary file stays behind.
            let _ = file.keep();
            return Ok(());
        }
    }
    file.persist(path).map_err(|err| err.error)?;
    if stop_after(Step::Renamed) {
        return Ok(());
    }
    sync_directory(dir)?;
    let _ = stop_after(Step::DirectorySynced);
    Ok(())
}

/// Syncs a directory's entries to disk, so a rename in it survives a power cut (a no-op where
/// directories cannot be opened as files).
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl<V: Send + Sync + 'static, C: Codec<V>> Engine<V, C> {
    /// After the first load failed with `err`: starts from the backup file at `path` when
    /// the store is unreachable and the file is whole; otherwise fails with `err` (a refused
    /// namespace or a broken schema is not papered over with old data).
    pub(super) async fn start_from_backup(&self, path: &Path, err: Error) -> Result<bool> {
        if !err.is_unavailable() {
            return Err(err);
        }
        let restoring = match read(path.to_owned()).await {
            Ok(durables) => self.restore(path, durables, err.clone()),
            Err(bad) => Err(bad),
        };
        if let Err(bad) = restoring {
            tracing::warn!(error = %bad, "durable: the store is unreachable and the backup file cannot be used");
            return Err(err);
        }
        tracing::warn!(
            backend = self.backend.name(),
            error = %err,
            path = %path.display(),
            version = self.version(),
            "durable: the store is unreachable; serving the backup file until it answers"
        );
        Ok(true)
    }

    /// Installs a snapshot read from the backup file, after the first load failed with
    /// `error`. Every value must decode: a file this dict cannot read whole is not used.
    pub(crate) fn restore(
        &self,
        path: &std::path::Path,
        durables: Durables,
        error: Error,
    ) -> std::result::Result<(), BackupError> {
        let mut entries = std::collections::HashMap::with_capacity(durables.entries.len());
        for (key, bytes) in durables.entries {
            let value = self.codec.decode(&bytes).map_err(|source| BackupError::Undecodable {
                path: path.to_owned(),
                key: key.clone(),
                reason: source.to_string(),
            })?;
            entries.insert(Arc::from(key), self.local_entry(&bytes, value));
        }
        self.restored.store(true, Ordering::Release);
        self.folder.reset();
        self.current.store(Arc::new(SnapshotData {
            entries: entries.into(),
            undecodable: imbl::HashMap::new(),
            version: durables.version,
        }));
        self.record(&Err(error));
        Ok(())
    }

    /// The current snapshot as a backup file's bytes, with the swap count it was taken at;
    /// `None` when a value cannot be encoded (then no backup is written).
    pub(crate) fn backup_bytes(&self) -> Option<(u64, Vec<u8>)> {
        let swaps = self.swaps.load(Ordering::Acquire);
        let data = self.current.load_full();
        let mut encoded = Vec::with_capacity(data.entries.len());
        for (key, entry) in data.entries.iter() {
            match self.codec.encode(&entry.value) {
                Ok(bytes) => encoded.push((&**key, bytes)),
                Err(err) => {
                    tracing::warn!(key = %&**key, error = %err, "durable: cannot encode a value for the backup file; not writing it");
                    return None;
                }
            }
        }
        Some((swaps, encode(data.version, encoded.into_iter())))
    }
}

/// The backup writer: after every snapshot swap, writes the snapshot to `path` (swaps that
/// arrive during a write are folded into the next one). Holds the dict weakly.
pub(super) async fn keep_backup<V: Send + Sync + 'static, C: Codec<V>>(
    inner: Weak<Engine<V, C>>,
    swapped: Arc<tokio::sync::Notify>,
    path: PathBuf,
    mut written: Option<u64>,
) {
    let mut failing = false;
    loop {
        let taken = {
            let Some(inner) = inner.upgrade() else { return };
            if written == Some(inner.swaps.load(std::sync::atomic::Ordering::Acquire)) {
                None
            } else {
                inner.backup_bytes()
            }
        };
        if let Some((swaps, bytes)) = taken {
            match write(path.clone(), bytes).await {
                Ok(()) => {
                    written = Some(swaps);
                    failing = false;
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(path = %path.display(), error = %err, "durable: cannot write the backup file; will retry on the next change");
                }
                Err(_) => {}
            }
        }
        swapped.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let entries = [("a", Bytes::from_static(b"1")), ("b", Bytes::from_static(b"\"two\""))];
        encode(7, entries.into_iter())
    }

    #[test]
    fn round_trips() {
        let decoded = decode_backup(Path::new("f"), &sample()).unwrap();
        assert_eq!(decoded.version, 7);
        assert_eq!(
            decoded.entries,
            vec![("a".into(), Bytes::from_static(b"1")), ("b".into(), Bytes::from_static(b"\"two\""))]
        );
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let good = sample();
        for len in 0..good.len() {
            assert!(decode_backup(Path::new("f"), &good[..len]).is_err(), "truncated to {len}");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(decode_backup(Path::new("f"), &bad).is_err(), "byte {at} flipped");
        }
    }

    /// A crash after any step of a write leaves the old whole backup or the new whole one.
    #[test]
    fn a_crash_at_any_step_leaves_a_whole_backup() {
        let steps = [Step::Created, Step::HalfWritten, Step::Written, Step::Synced, Step::Renamed];
        for crash_after in steps {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("flags.backup");
            let old = encode(1, [("a", Bytes::from_static(b"1"))].into_iter());
            write_steps(&path, &old, |_| false).unwrap();
            let new = encode(2, [("a", Bytes::from_static(b"2")), ("b", Bytes::from_static(b"3"))].into_iter());
            write_steps(&path, &new, |step| step == crash_after).unwrap();
            let read = read_backup(&path).unwrap_or_else(|err| panic!("after {crash_after:?}: {err}"));
            let expected = if crash_after == Step::Renamed { 2 } else { 1 };
            assert_eq!(read.version, expected, "a crash after {crash_after:?}");
            let leftovers = std::fs::read_dir(dir.path()).unwrap().count() - 1;
            assert_eq!(leftovers, usize::from(crash_after != Step::Renamed), "temporary files after {crash_after:?}");
            // The next write goes through, whatever the crash left.
            write_steps(&path, &new, |_| false).unwrap();
            assert_eq!(read_backup(&path).unwrap().version, 2);
        }
    }

    #[test]
    fn a_whole_write_leaves_only_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.backup");
        let seen = std::cell::RefCell::new(Vec::new());
        write_steps(&path, &sample(), |step| {
            seen.borrow_mut().push(step);
            false
        })
        .unwrap();
        assert_eq!(
            seen.into_inner(),
            [Step::Created, Step::HalfWritten, Step::Written, Step::Synced, Step::Renamed, Step::DirectorySynced]
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["flags.backup"]);
        assert_eq!(read_backup(&path).unwrap().version, 7);
    }

    #[test]
    fn a_forged_entry_count_is_refused_before_allocating() {
        let mut forged = sample();
        let at = MAGIC.len() + 1 + 8;
        forged[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let body = forged.len() - 4;
        let crc = crc32fast::hash(&forged[..body]);
        forged[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_backup(Path::new("f"), &forged), Err(BackupError::Corrupt { .. })));
    }
}
