//! Archives of the change journal (shoebox's rolling, versioned, compressed files), a
//! reader over them, and **restore** of a namespace as it was at any version.
//!
//! An [`Archiver`] drains a backend's journal into files in one directory:
//! `journal-<first version>.open` while it is written, renamed to
//! `journal-<first>-<last>.lz4` when it closes — at a size or an age limit
//! ([`ArchiveOptions`]), after which an optional hook runs (to upload it somewhere).
//!
//! Each file is one LZ4 frame (with block checksums, and a content checksum once closed)
//! holding a magic header, then framed items: a little-endian `u32` length, a `u32` CRC-32
//! of the payload, and the payload — one [`JournalItem`] (record or gap) in MessagePack. A crash mid-write leaves a torn `.open` file: reading
//! stops at the first incomplete or unverifiable item, so a torn tail is dropped and never
//! misread, and [`Archiver::open`] recovers the file (its whole items become a closed
//! file) and resumes from the last archived version — nothing lost, nothing doubled. A bad
//! checksum in a closed file is an error ([`ArchiveError::Corrupt`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Version};
use crate::batch::Batch;
use crate::error::Error;
use crate::journal::{Gap, GapCause, JournalItem, JournalReader, JournalRecord, PAGE, time_from_millis};

/// Default size at which a file closes (compressed bytes).
pub const DEFAULT_FILE_BYTES: u64 = 64 << 20;
/// Default age at which a file closes.
pub const DEFAULT_FILE_AGE: Duration = Duration::from_secs(3_600);

const MAGIC: &[u8; 8] = b"DURJRNL1";
const OPEN_SUFFIX: &str = ".open";
const CLOSED_SUFFIX: &str = ".lz4";

/// What can go wrong archiving, reading an archive or restoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Reading or writing a file failed.
    #[error("archive I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A closed file does not read back as written (bad checksum, bad framing).
    #[error("archive file {path} is corrupt at item {index}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which item (0-based).
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
    /// Restoring needs every change up to the version, and some are missing.
    #[error("cannot restore version {version}: {gap}")]
    Gap {
        /// The version asked for.
        version: Version,
        /// The missing changes.
        gap: Gap,
    },
    /// The version asked for is past what the journal holds.
    #[error("cannot restore version {wanted}: the namespace is at version {available}")]
    NotYet {
        /// The version asked for.
        wanted: Version,
        /// The newest version there is.
        available: Version,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_owned(), source }
}

/// A file the archiver closed: what the hook is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedFile {
    /// Its path.
    pub path: PathBuf,
    /// The first and last version it holds.
    pub first: Version,
    /// The last version it holds.
    pub last: Version,
    /// How many items it holds.
    pub items: u64,
    /// Its size on disk.
    pub bytes: u64,
}

/// The hook run when a file closes.
pub type OnClose = Arc<dyn Fn(&ClosedFile) + Send + Sync>;

/// When files close, and what runs then.
#[derive(Clone)]
pub struct ArchiveOptions {
    max_file_bytes: u64,
    max_file_age: Duration,
    on_close: Option<OnClose>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self { max_file_bytes: DEFAULT_FILE_BYTES, max_file_age: DEFAULT_FILE_AGE, on_close: None }
    }
}

impl std::fmt::Debug for ArchiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveOptions")
            .field("max_file_bytes", &self.max_file_bytes)
            .field("max_file_age", &self.max_file_age)
            .field("on_close", &self.on_close.is_some())
            .finish()
    }
}

impl ArchiveOptions {
    /// A file closes once it holds this many compressed bytes (default 64 MiB).
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(1);
        self
    }

    /// A file closes once it is this old, at the next drain (default one hour).
    pub fn max_file_age(mut self, age: Duration) -> Self {
        self.max_file_age = age;
        self
    }

    /// Runs `hook` after each file closes (renamed and synced), e.g. to upload it.
    pub fn on_close(mut self, hook: impl Fn(&ClosedFile) + Send + Sync + 'static) -> Self {
        self.on_close = Some(Arc::new(hook));
        self
    }
}

/// One item as an archive file holds it.
#[derive(Serialize, Deserialize)]
enum Stored {
    /// A record: version, key, old, new, actor, reason, time (ms since the epoch).
    R(Version, String, Option<Bytes>, Option<Bytes>, String, Option<String>, Option<u64>),
    /// A gap: after, before, trimmed (else not journaled), key.
    G(Version, Version, bool, Option<String>),
}

impl Stored {
    fn of(item: &JournalItem) -> Self {
        match item {
            JournalItem::Record(r) => Stored::R(
                r.version,
                r.key.clone(),
                r.old.clone(),
                r.new.clone(),
                r.actor.clone(),
                r.reason.clone(),
                r.time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_millis() as u64),
            ),
            JournalItem::Gap(g) => Stored::G(g.after, g.before, g.cause == GapCause::Trimmed, g.key.clone()),
        }
    }

    fn into_item(self) -> JournalItem {
        match self {
            Stored::R(version, key, old, new, actor, reason, time) => JournalItem::Record(JournalRecord {
                version,
                key,
                old,
                new,
                actor,
                reason,
                time: time.and_then(|ms| time_from_millis(i64::try_from(ms).ok()?)),
            }),
            Stored::G(after, before, trimmed, key) => JournalItem::Gap(Gap {
                after,
                before,
                cause: if trimmed { GapCause::Trimmed } else { GapCause::NotJournaled },
                key,
            }),
        }
    }
}

/// The last version an item accounts for.
fn item_version(item: &JournalItem) -> Version {
    match item {
        JournalItem::Record(record) => record.version,
        JournalItem::Gap(gap) => gap.before.saturating_sub(1),
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct OpenFile {
    path: PathBuf,
    encoder: lz4_flex::frame::FrameEncoder<Counting<BufWriter<File>>>,
    first: Version,
    last: Version,
    items: u64,
    opened: Instant,
}

/// Drains a journal into rolling archive files; see the module docs.
pub struct Archiver {
    dir: PathBuf,
    options: ArchiveOptions,
    reader: JournalReader,
    open: Option<OpenFile>,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver").field("dir", &self.dir).field("after", &self.after()).finish()
    }
}

impl Archiver {
    /// Opens the archive in `dir` (created if missing): recovers a file a crash left open
    /// (its whole items become a closed file; a torn tail is dropped) and resumes after
    /// the last version archived.
    pub fn open(dir: impl Into<PathBuf>, options: ArchiveOptions) -> Result<Self, ArchiveError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut archiver = Self { dir, options, reader: JournalReader::new(0), open: None };
        let mut after = 0;
        for file in archive_files(&archiver.dir)? {
            if file.open {
                let items: Vec<JournalItem> = FileItems::open(&file)?.collect::<Result<_, _>>()?;
                fs::remove_file(&file.path).map_err(io_error(&file.path))?;
                if !items.is_empty() {
                    for item in &items {
                        archiver.append(item)?;
                    }
                    archiver.close_file()?;
                }
            }
            after = after.max(archiver.after()).max(file.last.unwrap_or(0));
        }
        archiver.reader = JournalReader::new(after);
        Ok(archiver)
    }

    /// The last version archived; the next drain starts after it.
    pub fn after(&self) -> Version {
        self.open.as_ref().map_or(self.reader.after(), |open| open.last.max(self.reader.after()))
    }

    /// Archives everything the journal of `backend` holds after [`Archiver::after`], and
    /// makes it durable (the file flushed and synced). Returns how many items it wrote.
    /// Closes the file when it reached its size or age limit.
    pub async fn drain(&mut self, backend: &dyn Backend) -> Result<u64, ArchiveError> {
        let mut written = 0;
        loop {
            let page = backend.journal(self.reader.after(), PAGE).await?;
            let more = page.more;
            for item in self.reader.read(page) {
                self.append(&item)?;
                written += 1;
            }
            if !more {
                break;
            }
        }
        self.sync()?;
        let full = |open: &OpenFile| {
            open.opened.elapsed() >= self.options.max_file_age
                || open.encoder.get_ref().written >= self.options.max_file_bytes
        };
        if self.open.as_ref().is_some_and(full) {
            self.close_file()?;
        }
        Ok(written)
    }

    /// Flushes and syncs the open file.
    pub fn sync(&mut self) -> Result<(), ArchiveError> {
        if let Some(open) = self.open.as_mut() {
            let path = open.path.clone();
            // The encoder writes the pending block; the buffered file writer then writes it out.
            open.encoder.flush().map_err(io_error(&path))?;
            open.encoder.get_mut().flush().map_err(io_error(&path))?;
            open.encoder.get_ref().inner.get_ref().sync_data().map_err(io_error(&path))?;
        }
        Ok(())
    }

    /// Appends one item, opening a file first when none is open and closing it when full.
    fn append(&mut self, item: &JournalItem) -> Result<(), ArchiveError> {
        let version = item_version(item);
        if self.open.is_none() {
            let path = self.dir.join(format!("journal-{:020}{OPEN_SUFFIX}", version));
            let file = File::create(&path).map_err(io_error(&path))?;
            let counting = Counting { inner: BufWriter::new(file), written: 0 };
            // Block checksums: a damaged block is refused before it is decompressed (a flipped
            // match offset can otherwise copy an earlier, intact item); a content checksum
            // over the whole file once it is closed.
            let info = lz4_flex::frame::FrameInfo::new().block_checksums(true).content_checksum(true);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, counting);
            encoder.write_all(MAGIC).map_err(io_error(&path))?;
            self.open =
                Some(OpenFile { path, encoder, first: version, last: version, items: 0, opened: Instant::now() });
        }
        let Some(open) = self.open.as_mut() else { unreachable!("opened above") };
        let payload = rmp_serde::to_vec(&Stored::of(item))
            .map_err(|err| ArchiveError::Io { path: open.path.clone(), source: io::Error::other(err) })?;
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        open.encoder.write_all(&frame).map_err(io_error(&open.path))?;
        open.last = open.last.max(version);
        open.items += 1;
        if open.encoder.get_ref().written >= self.options.max_file_bytes {
            self.close_file()?;
        }
        Ok(())
    }

    /// Closes the open file, if any: ends the frame, syncs, renames it to its final name,
    /// syncs the directory, runs the hook.
    pub fn close_file(&mut self) -> Result<Option<ClosedFile>, ArchiveError> {
        let Some(open) = self.open.take() else { return Ok(None) };
        let OpenFile { path, encoder, first, last, items, .. } = open;
        let counting = encoder.finish().map_err(|err| ArchiveError::Io { path: path.clone(), source: err.into() })?;
        let file = counting
            .inner
            .into_inner()
            .map_err(|err| ArchiveError::Io { path: path.clone(), source: err.into_error() })?;
        file.sync_all().map_err(io_error(&path))?;
        let closed = self.dir.join(format!("journal-{first:020}-{last:020}{CLOSED_SUFFIX}"));
        fs::rename(&path, &closed).map_err(io_error(&closed))?;
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io_error(&self.dir))?;
        let bytes = fs::metadata(&closed).map_err(io_error(&closed))?.len();
        let info = ClosedFile { path: closed, first, last, items, bytes };
        self.reader = JournalReader::new(self.reader.after().max(last));
        if let Some(hook) = &self.options.on_close {
            hook(&info);
        }
        Ok(Some(info))
    }
}

/// One archive file, from its name.
#[derive(Debug, Clone)]
struct ArchiveFile {
    path: PathBuf,
    first: Version,
    last: Option<Version>,
    open: bool,
}

/// The archive's files in version order.
fn archive_files(dir: &Path) -> Result<Vec<ArchiveFile>, ArchiveError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("journal-") else { continue };
        let (stem, open) = if let Some(stem) = rest.strip_suffix(OPEN_SUFFIX) {
            (stem, true)
        } else if let Some(stem) = rest.strip_suffix(CLOSED_SUFFIX) {
            (stem, false)
        } else {
            continue;
        };
        let mut parts = stem.split('-').map(str::parse::<Version>);
        let (Some(Ok(first)), last) = (parts.next(), parts.next().and_then(Result::ok)) else { continue };
        files.push(ArchiveFile { path: entry.path(), first, last, open });
    }
    files.sort_by_key(|file| (file.first, file.open));
    Ok(files)
}

/// The items of one file.
struct FileItems {
    file: ArchiveFile,
    decoder: lz4_flex::frame::FrameDecoder<BufReader<File>>,
    index: u64,
    done: bool,
}

impl FileItems {
    fn open(file: &ArchiveFile) -> Result<Self, ArchiveError> {
        let handle = File::open(&file.path).map_err(io_error(&file.path))?;
        let decoder = lz4_flex::frame::FrameDecoder::new(BufReader::new(handle));
        let mut items = Self { file: file.clone(), decoder, index: 0, done: false };
        let mut magic = [0u8; 8];
        match items.decoder.read_exact(&mut magic) {
            Ok(()) if &magic == MAGIC => {}
            // A crash before the header reached the disk: an empty torn file.
            Err(_) if file.open => items.done = true,
            Ok(()) => return Err(items.corrupt("not a journal archive")),
            Err(err) => return Err(items.corrupt(&err.to_string())),
        }
        Ok(items)
    }

    fn corrupt(&self, reason: &str) -> ArchiveError {
        ArchiveError::Corrupt { path: self.file.path.clone(), index: self.index, reason: reason.to_owned() }
    }

    fn next_item(&mut self) -> Result<Option<JournalItem>, String> {
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < header.len() {
            match self.decoder.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err("the file ends inside an item".into()),
                Ok(n) => got += n,
                Err(err) => return Err(err.to_string()),
            }
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut payload = vec![0u8; len];
        self.decoder.read_exact(&mut payload).map_err(|err| err.to_string())?;
        if crc32fast::hash(&payload) != crc {
            return Err("checksum mismatch".into());
        }
        let stored: Stored = rmp_serde::from_slice(&payload).map_err(|err| err.to_string())?;
        Ok(Some(stored.into_item()))
    }
}

impl Iterator for FileItems {
    type Item = Result<JournalItem, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_item() {
            Ok(Some(item)) => {
                self.index += 1;
                Some(Ok(item))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            // A file left open by a crash ends where the crash tore it.
            Err(_) if self.file.open => {
                self.done = true;
                None
            }
            Err(reason) => {
                self.done = true;
                Some(Err(self.corrupt(&reason)))
            }
        }
    }
}

/// Every item of the archive in `dir`, in version order, checksums verified; a torn
/// `.open` file ends where it was torn.
pub fn read_archive(dir: &Path) -> Result<impl Iterator<Item = Result<JournalItem, ArchiveError>>, ArchiveError> {
    let files = archive_files(dir)?;
    // A file that cannot even be opened is reported in its place, as a damaged item is.
    Ok(files.into_iter().flat_map(|file| -> Box<dyn Iterator<Item = Result<JournalItem, ArchiveError>>> {
        match FileItems::open(&file) {
            Ok(items) => Box::new(items),
            Err(err) => Box::new(std::iter::once(Err(err))),
        }
    }))
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The version restored.
    pub version: Version,
    /// How many keys the namespace had then.
    pub keys: usize,
    /// How many batches wrote it to the target (1: one atomic step).
    pub batches: usize,
    /// How many items came from the archive, and how many from the live journal.
    pub from_archive: u64,
    /// How many items came from the live journal.
    pub from_journal: u64,
}

/// Rebuilds the namespace as it was at `version` — from the archive in `archive` (if any)
/// and then `source`'s live journal — into `target` (another namespace, or another
/// store): the target ends holding exactly that version's keys and values (keys it had
/// that were not there are removed). Written as one batch when it fits the target's size
/// limit, else in batches of at most half of it (the report says how many).
///
/// Fails with [`ArchiveError::Gap`] when a change up to `version` is missing (trimmed
/// before it was archived, or written by a writer that keeps no journal) and with
/// [`ArchiveError::NotYet`] when `version` is past the namespace's.
pub async fn restore(
    archive: Option<&Path>,
    source: &dyn Backend,
    version: Version,
    target: &dyn Backend,
) -> Result<Restored, ArchiveError> {
    let mut state: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut at: Version = 0;
    let mut from_archive = 0;
    let apply =
        |item: JournalItem, state: &mut BTreeMap<String, Bytes>, at: &mut Version| -> Result<bool, ArchiveError> {
            match item {
                JournalItem::Record(record) if record.version <= version => {
                    match record.new {
                        Some(value) => state.insert(record.key, value),
                        None => state.remove(&record.key),
                    };
                    *at = record.version;
                    Ok(true)
                }
                JournalItem::Gap(gap) if gap.after < version => Err(ArchiveError::Gap { version, gap }),
                _ => Ok(false),
            }
        };
    if let Some(dir) = archive {
        for item in read_archive(dir)? {
            if !apply(item?, &mut state, &mut at)? {
                break;
            }
            from_archive += 1;
        }
    }
    let mut from_journal = 0;
    let mut reader = JournalReader::new(at);
    let mut available = at;
    'pages: while at < version {
        let page = source.journal(reader.after(), PAGE).await?;
        let more = page.more;
        available = page.version;
        for item in reader.read(page) {
            if !apply(item, &mut state, &mut at)? {
                break 'pages;
            }
            from_journal += 1;
        }
        if !more {
            break;
        }
    }
    if available < version && at < version {
        return Err(ArchiveError::NotYet { wanted: version, available });
    }
    let keys = state.len();
    let existing = target.durables().await?;
    let limit = target.max_value_size().map_or(usize::MAX, |max| max / 2).max(1);
    let mut batches = Vec::new();
    let mut batch = Batch::new();
    let mut weight = 0;
    let stale = existing.entries.into_iter().filter(|(key, _)| !state.contains_key(key)).map(|(key, _)| key);
    for key in stale {
        weight += key.len();
        batch = batch.delete(key);
    }
    for (key, value) in state {
        let size = key.len() + value.len();
        if weight + size > limit && !batch.is_empty() {
            batches.push(std::mem::take(&mut batch));
            weight = 0;
        }
        weight += size;
        batch = batch.put(key, value);
    }
    batches.push(batch);
    let count = batches.len();
    for batch in batches {
        target.apply(batch.reason(format!("restore of version {version}"))).await?;
    }
    Ok(Restored { version, keys, batches: count, from_archive, from_journal })
}
