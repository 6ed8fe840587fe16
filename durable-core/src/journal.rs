//! The change journal: one [`JournalRecord`] per key a mutation changed — version, key, old
//! value, new value, actor, reason and the store's time — written by the backend **in the
//! same atomic step as the change** (invariant 11), kept beside the data under a retention
//! ([`JournalConfig`]), and read back in version order with every version gap reported
//! ([`JournalReader`], [`follow`]).
//!
//! A gap is what a writer that keeps no journal leaves (durabledict's Python writers, a
//! dict with the journal off), or what retention removed: the reader says
//! "changes not journaled between v1 and v2" with the cause, never silently skips it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::backend::{Backend, Hint, Version};
use crate::error::Result;

/// How many versions a journal keeps by default (see [`JournalConfig::keep_versions`]).
pub const DEFAULT_JOURNAL_VERSIONS: u64 = 10_000;

/// How a backend keeps its journal: on or off, who writes, and for how long records stay.
/// Given to a backend's builder (`.journal(...)`); the default is on, the actor is
/// [`default_actor`], and the last [`DEFAULT_JOURNAL_VERSIONS`] versions are kept.
///
/// ```
/// use std::time::Duration;
/// use durable_core::JournalConfig;
/// let journal = JournalConfig::default().actor("deploy-bot").keep_versions(500).keep_for(Duration::from_secs(86_400));
/// assert!(journal.is_on());
/// assert_eq!(journal.actor_name(), "deploy-bot");
/// assert!(!JournalConfig::off().is_on());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    on: bool,
    actor: Arc<str>,
    keep_versions: Option<u64>,
    keep_for: Option<Duration>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self { on: true, actor: default_actor().into(), keep_versions: Some(DEFAULT_JOURNAL_VERSIONS), keep_for: None }
    }
}

impl JournalConfig {
    /// No journal: writes record nothing (and readers see their versions as gaps).
    pub fn off() -> Self {
        Self { on: false, ..Self::default() }
    }

    /// The name records carry as their actor (default: [`default_actor`]).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into().into();
        self
    }

    /// Keeps the records of the last `versions` versions (at least 1; default
    /// [`DEFAULT_JOURNAL_VERSIONS`]). Older ones are trimmed by later writes; a store may
    /// keep up to a tenth more before it trims, so that trimming costs little per write.
    pub fn keep_versions(mut self, versions: u64) -> Self {
        self.keep_versions = Some(versions.max(1));
        self
    }

    /// Keeps every version (no count limit; an age limit may still apply).
    pub fn keep_all_versions(mut self) -> Self {
        self.keep_versions = None;
        self
    }

    /// Trims records older than `age` by the store's clock (default: no age limit).
    pub fn keep_for(mut self, age: Duration) -> Self {
        self.keep_for = Some(age);
        self
    }

    /// Whether writes record anything.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The actor records carry.
    pub fn actor_name(&self) -> &str {
        &self.actor
    }

    /// The actor, shared (for a store that keeps it once for many records).
    pub fn actor_shared(&self) -> Arc<str> {
        Arc::clone(&self.actor)
    }

    /// The count limit, if any.
    pub fn versions_kept(&self) -> Option<u64> {
        self.keep_versions
    }

    /// The age limit, if any.
    pub fn kept_for(&self) -> Option<Duration> {
        self.keep_for
    }

    /// The version through which records may be trimmed after a write made `version`
    /// (`None`: keep everything). Trimming happens only every tenth of the count limit, so
    /// a store trims in chunks; the floor returned keeps at least `keep_versions`.
    pub fn trim_through(&self, version: Version) -> Option<Version> {
        let keep = self.keep_versions?;
        let every = (keep / 10).max(1);
        (version > keep && version % every == 0).then(|| version - keep)
    }

    /// Whether a write that made `version` should also trim by age (every tenth of the
    /// count limit, or every 100 versions without one).
    pub fn trims_by_age_at(&self, version: Version) -> bool {
        let every = self.keep_versions.map_or(100, |keep| (keep / 10).max(1));
        self.keep_for.is_some() && version % every == 0
    }
}

/// The actor name a journal uses unless told otherwise: `<host name>:<process id>`.
pub fn default_actor() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// One key's change, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The version the change made (a batch's records share one).
    pub version: Version,
    /// The key.
    pub key: String,
    /// The encoded value before the change, `None` when the key was absent.
    pub old: Option<Bytes>,
    /// The encoded value after the change, `None` when it was deleted.
    pub new: Option<Bytes>,
    /// Who wrote it ([`JournalConfig::actor`]).
    pub actor: String,
    /// Why, when the write said ([`Batch::reason`](crate::Batch::reason)).
    pub reason: Option<String>,
    /// When, by the store's clock (milliseconds precision; `None` where the store has no
    /// clock it can read in the write).
    pub time: Option<SystemTime>,
}

/// A run of versions the journal cannot show: the records of every version strictly
/// between `after` and `before` are missing — or, with a `key`, that key was changed
/// between the two versions by a write that kept no journal and moved no version
/// (durabledict's ZooKeeper writers), seen because its next record's old value is not the
/// last record's new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The last version shown before the gap (0: the beginning).
    pub after: Version,
    /// The first version shown after it (the namespace version + 1 for a gap at the end).
    pub before: Version,
    /// Why the records are missing.
    pub cause: GapCause,
    /// The key, for a change seen only through its value.
    pub key: Option<String>,
}

/// Why a [`Gap`] has no records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapCause {
    /// Retention removed them.
    Trimmed,
    /// A writer that keeps no journal made them: durabledict's writers, a dict with the
    /// journal off, or a store without a journal.
    NotJournaled,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (after, before) = (self.after, self.before);
        match (&self.key, self.cause) {
            (Some(key), _) => write!(f, "key {key:?} changed without a journal record between v{after} and v{before}"),
            (None, GapCause::Trimmed) => write!(f, "changes between v{after} and v{before} trimmed from the journal"),
            (None, GapCause::NotJournaled) => write!(f, "changes not journaled between v{after} and v{before}"),
        }
    }
}

/// What a journal reader yields: a record, or a gap where records are missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalItem {
    /// A change.
    Record(JournalRecord),
    /// Missing records, and why.
    Gap(Gap),
}

/// One read of a journal ([`Backend::journal`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalPage {
    /// Records of versions above the asked-for one, in version order (a version's records
    /// in key order), whole versions only.
    pub records: Vec<JournalRecord>,
    /// The namespace version when the records were read: every journaled version up to it
    /// is in this page or a later one.
    pub version: Version,
    /// Retention has removed every record at or below this version (0: nothing trimmed).
    pub trimmed_through: Version,
    /// Whether records after this page's last version may follow (ask again from it).
    pub more: bool,
    /// Versions up to this page's last record (or up to `version` when no more follow)
    /// that changed no key and so have no records, yet are no gap: a store that keeps
    /// leases in its log gives each lease operation, and each write a lease refused, a
    /// version of its own (object storage). In order.
    pub unchanged: Vec<Version>,
}

/// Makes a page of whole versions from records in version order read with a `limit`:
/// when the read was cut at the limit, the last version may be cut too, so it is dropped —
/// unless it is the only one, then `rest` fetches the whole of it.
pub fn whole_versions(mut records: Vec<JournalRecord>, limit: usize) -> (Vec<JournalRecord>, bool) {
    let more = records.len() >= limit.max(1);
    if more && let Some(last) = records.last().map(|record| record.version) {
        let first = records.first().map_or(last, |record| record.version);
        if first != last {
            records.retain(|record| record.version != last);
        }
    }
    (records, more)
}

/// Turns journal pages into [`JournalItem`]s: records in version order, and a [`Gap`]
/// wherever versions have no records — between records, and at the end up to the
/// namespace version. Resumable: it starts after a version and [`JournalReader::after`]
/// says where it is.
#[derive(Debug, Clone)]
pub struct JournalReader {
    after: Version,
    /// Per key: the version and new value of its last record seen, to notice a change that
    /// kept no record and moved no version.
    last: HashMap<String, (Version, Option<Bytes>)>,
    /// The end of the last gap reported: a key last seen before it may have changed in it.
    last_gap: Version,
}

impl JournalReader {
    /// A reader that starts after `version` (0: from the beginning).
    pub fn new(after: Version) -> Self {
        Self { after, last: HashMap::new(), last_gap: after }
    }

    /// The last version it went through; resume a stream from here.
    pub fn after(&self) -> Version {
        self.after
    }

    /// The items of one page, in order. When the page is the last (`more` false), a gap at
    /// the end is reported too.
    pub fn read(&mut self, page: JournalPage) -> Vec<JournalItem> {
        let mut items = Vec::with_capacity(page.records.len() + 1);
        let mut unchanged = page.unchanged.into_iter().peekable();
        for record in page.records {
            // Pages start after `after`; a version's records come together, so an older one
            // is a page that overlapped this reader's position.
            if record.version < self.after {
                continue;
            }
            while let Some(quiet) = unchanged.next_if(|quiet| *quiet < record.version) {
                self.pass(quiet, page.trimmed_through, &mut items);
            }
            if record.version > self.after + 1 {
                self.gap(record.version, page.trimmed_through, &mut items);
            }
            if let Some((seen, value)) = self.last.get(&record.key)
                && *seen > self.last_gap
                && *value != record.old
            {
                items.push(JournalItem::Gap(Gap {
                    after: *seen,
                    before: record.version,
                    cause: GapCause::NotJournaled,
                    key: Some(record.key.clone()),
                }));
            }
            self.last.insert(record.key.clone(), (record.version, record.new.clone()));
            self.after = self.after.max(record.version);
            items.push(JournalItem::Record(record));
        }
        if !page.more {
            for quiet in unchanged.filter(|quiet| *quiet <= page.version) {
                self.pass(quiet, page.trimmed_through, &mut items);
            }
        }
        if !page.more && page.version > self.after {
            self.gap(page.version + 1, page.trimmed_through, &mut items);
            self.after = page.version;
        }
        items
    }

    /// Goes past `version`, which changed nothing (after a gap before it, if any).
    fn pass(&mut self, version: Version, trimmed_through: Version, items: &mut Vec<JournalItem>) {
        if version <= self.after {
            return;
        }
        if version > self.after + 1 {
            self.gap(version, trimmed_through, items);
        }
        self.after = version;
    }

    /// Reports versions `self.after + 1 .. before` as missing: trimmed as far as retention
    /// went, not journaled beyond.
    fn gap(&mut self, before: Version, trimmed_through: Version, items: &mut Vec<JournalItem>) {
        let after = self.after;
        if after < trimmed_through {
            let end = trimmed_through.min(before - 1);
            items.push(JournalItem::Gap(Gap { after, before: end + 1, cause: GapCause::Trimmed, key: None }));
            if end + 1 < before {
                items.push(JournalItem::Gap(Gap { after: end, before, cause: GapCause::NotJournaled, key: None }));
            }
        } else {
            items.push(JournalItem::Gap(Gap { after, before, cause: GapCause::NotJournaled, key: None }));
        }
        self.after = before - 1;
        self.last_gap = before - 1;
    }
}

/// How many records [`follow`] and [`read_all`] ask for per page.
pub const PAGE: usize = 1_000;

/// Every record and gap after `after` up to the namespace version now, in version order.
pub async fn read_all(backend: &dyn Backend, after: Version) -> Result<Vec<JournalItem>> {
    let mut reader = JournalReader::new(after);
    let mut items = Vec::new();
    loop {
        let page = backend.journal(reader.after(), PAGE).await?;
        let more = page.more;
        items.extend(reader.read(page));
        if !more {
            return Ok(items);
        }
    }
}

/// The journal after `after` as a stream that never ends: what is there now, then every
/// change as it is made, in version order with gaps reported. It listens to the backend's
/// change hints, and polls every `poll` as well (or only, where the store pushes none).
/// An error is yielded once and the stream goes on from where it was (resumable by version:
/// start a new one from the last record's version).
pub fn follow(
    backend: Arc<dyn Backend>,
    after: Version,
    poll: Duration,
) -> impl Stream<Item = Result<JournalItem>> + Send + 'static {
    struct State {
        backend: Arc<dyn Backend>,
        reader: JournalReader,
        pending: std::collections::VecDeque<JournalItem>,
        hints: Option<crate::backend::HintStream>,
        subscribed: bool,
        caught_up: bool,
        poll: Duration,
    }
    let state = State {
        backend,
        reader: JournalReader::new(after),
        pending: Default::default(),
        hints: None,
        subscribed: false,
        caught_up: false,
        poll,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.pending.pop_front() {
                return Some((Ok(item), state));
            }
            if !state.subscribed {
                // Subscribe before the first read, so that no change falls between them.
                state.subscribed = true;
                match state.backend.watch().await {
                    Ok(hints) => state.hints = hints,
                    Err(err) => return Some((Err(err), state)),
                }
            }
            if state.caught_up {
                let waited = async {
                    match state.hints.as_mut() {
                        Some(hints) => loop {
                            match hints.next().await {
                                Some(Hint::Changed { .. } | Hint::Resumed) => return,
                                Some(_) => continue,
                                None => std::future::pending::<()>().await,
                            }
                        },
                        None => std::future::pending::<()>().await,
                    }
                };
                let _ = tokio::time::timeout(state.poll, waited).await;
            }
            match state.backend.journal(state.reader.after(), PAGE).await {
                Ok(page) => {
                    state.caught_up = !page.more;
                    state.pending.extend(state.reader.read(page));
                }
                Err(err) => {
                    state.caught_up = true;
                    return Some((Err(err), state));
                }
            }
        }
    })
}

/// The records of `key`, newest first, at most `limit`, from records in version order
/// (the fallback a backend without a key index uses: it reads its whole journal).
pub fn newest_first_for_key(
    records: impl IntoIterator<Item = JournalRecord>,
    key: &str,
    limit: usize,
) -> Vec<JournalRecord> {
    let mut found: Vec<JournalRecord> = records.into_iter().filter(|record| record.key == key).collect();
    found.reverse();
    found.truncate(limit);
    found
}

/// Milliseconds since the Unix epoch as a time (how stores hand their clock over).
pub fn time_from_millis(millis: i64) -> Option<SystemTime> {
    u64::try_from(millis).ok().map(|millis| SystemTime::UNIX_EPOCH + Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: Version, key: &str, old: Option<&str>, new: Option<&str>) -> JournalRecord {
        let bytes = |text: Option<&str>| text.map(|text| Bytes::copy_from_slice(text.as_bytes()));
        JournalRecord {
            version,
            key: key.to_owned(),
            old: bytes(old),
            new: bytes(new),
            actor: "t".into(),
            reason: None,
            time: None,
        }
    }

    fn page(records: Vec<JournalRecord>, version: Version, trimmed_through: Version) -> JournalPage {
        JournalPage { records, version, trimmed_through, more: false, unchanged: Vec::new() }
    }

    fn gaps(items: &[JournalItem]) -> Vec<(Version, Version, GapCause, Option<&str>)> {
        items
            .iter()
            .filter_map(|item| match item {
                JournalItem::Gap(gap) => Some((gap.after, gap.before, gap.cause, gap.key.as_deref())),
                JournalItem::Record(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_complete_journal_has_no_gap() {
        let mut reader = JournalReader::new(0);
        let items = reader.read(page(
            vec![
                record(1, "a", None, Some("1")),
                record(2, "a", Some("1"), Some("2")),
                record(2, "b", None, Some("x")),
            ],
            2,
            0,
        ));
        assert_eq!(items.len(), 3);
        assert!(gaps(&items).is_empty());
        assert_eq!(reader.after(), 2);
    }

    #[test]
    fn missing_versions_are_reported_between_and_at_the_end() {
        let mut reader = JournalReader::new(0);
        let items = reader.read(page(vec![record(1, "a", None, Some("1")), record(4, "b", None, Some("2"))], 6, 0));
        assert_eq!(gaps(&items), [(1, 4, GapCause::NotJournaled, None), (4, 7, GapCause::NotJournaled, None)]);
        assert_eq!(reader.after(), 6);
        assert_eq!(
            Gap { after: 1, before: 4, cause: GapCause::NotJournaled, key: None }.to_string(),
            "changes not journaled between v1 and v4"
        );
    }

    #[test]
    fn versions_that_changed_nothing_are_no_gap() {
        let mut reader = JournalReader::new(0);
        let records = vec![record(2, "a", None, Some("1")), record(5, "a", Some("1"), Some("2"))];
        let mut quiet = page(records, 8, 0);
        quiet.unchanged = vec![1, 3, 4, 7, 8];
        let items = reader.read(quiet);
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(gaps(&items), [(5, 7, GapCause::NotJournaled, None)], "only v6 is missing");
        assert_eq!(reader.after(), 8);
        // On a page that says more follows, the versions are passed as far as its records.
        let mut reader = JournalReader::new(0);
        let mut first = page(vec![record(2, "a", None, Some("1"))], 9, 0);
        (first.more, first.unchanged) = (true, vec![1]);
        assert!(gaps(&reader.read(first)).is_empty());
        assert_eq!(reader.after(), 2);
    }

    #[test]
    fn trimmed_versions_are_told_apart_from_unjournaled_ones() {
        let mut reader = JournalReader::new(0);
        let items = reader.read(page(vec![record(9, "a", Some("0"), Some("1"))], 9, 5));
        assert_eq!(gaps(&items), [(0, 6, GapCause::Trimmed, None), (5, 9, GapCause::NotJournaled, None)]);
    }

    #[test]
    fn a_value_changed_outside_the_journal_is_a_key_gap() {
        let mut reader = JournalReader::new(0);
        let items =
            reader.read(page(vec![record(1, "a", None, Some("1")), record(2, "a", Some("python"), Some("2"))], 2, 0));
        assert_eq!(gaps(&items), [(1, 2, GapCause::NotJournaled, Some("a"))]);
    }

    #[test]
    fn a_reader_resumes_where_it_stopped() {
        let mut reader = JournalReader::new(1);
        let items = reader.read(page(vec![record(2, "a", Some("1"), Some("2"))], 2, 0));
        assert_eq!(items.len(), 1);
        assert!(gaps(&items).is_empty());
    }

    #[test]
    fn pages_keep_whole_versions() {
        let records =
            vec![record(1, "a", None, Some("1")), record(2, "a", None, Some("1")), record(2, "b", None, Some("1"))];
        let (kept, more) = whole_versions(records.clone(), 3);
        assert!(more);
        assert_eq!(kept.len(), 1);
        let (kept, more) = whole_versions(records[1..].to_vec(), 2);
        assert!(more);
        assert_eq!(kept.len(), 2, "a version bigger than the limit comes whole");
        let (kept, more) = whole_versions(records, 10);
        assert!(!more);
        assert_eq!(kept.len(), 3);
    }

    #[test]
    fn retention_trims_in_chunks_and_keeps_the_count() {
        let journal = JournalConfig::default().keep_versions(100);
        assert_eq!(journal.trim_through(100), None);
        assert_eq!(journal.trim_through(105), None);
        assert_eq!(journal.trim_through(110), Some(10));
        assert_eq!(JournalConfig::default().keep_all_versions().trim_through(1_000_000), None);
        assert!(default_actor().contains(':'));
    }
}
