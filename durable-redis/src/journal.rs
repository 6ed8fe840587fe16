//! The change journal in Redis: the stream `<namespace>:journal`, one entry per changed key
//! with ID `<version>-<n>`, written by the same script as the change (`lua/commit.lua`),
//! and `<namespace>:journal:trimmed`, the version retention trimmed through. Read here.

use bytes::Bytes;
use durable_core::journal::{time_from_millis, whole_versions};
use durable_core::{JournalPage, JournalRecord, Result, Version};
use redis::Value;

use crate::backend::{RedisBackend, parse_counter};
use crate::connection::unexpected;

/// How many entries `history` reads per step going back through the stream.
const HISTORY_STEP: usize = 1_000;

impl RedisBackend {
    /// One page: the counter, the trimmed-through version and up to `limit` entries after
    /// `after`, in one MULTI/EXEC (so the version is as of the entries); a version cut by
    /// the limit is completed by one more read when it is the only one.
    pub(crate) async fn journal_page(&self, after: Version, limit: usize) -> Result<JournalPage> {
        let k = &self.keys;
        let limit = limit.max(1);
        let start = format!("{}-0", after + 1);
        let mut query = redis::pipe();
        query.atomic().get(&k.counter).get(&k.journal_trimmed);
        query.cmd("XRANGE").arg(&k.journal).arg(&start).arg("+").arg("COUNT").arg(limit);
        let mut connection = self.shared.commands.clone();
        let (counter, trimmed, entries): (Option<Vec<u8>>, Option<Vec<u8>>, Value) =
            self.run("journal", query.query_async(&mut connection)).await?;
        let version = parse_counter(counter)?;
        let trimmed_through = parse_counter(trimmed)?;
        let mut records = parse_entries(entries)?;
        if records.len() >= limit
            && let (Some(first), Some(last)) = (records.first(), records.last())
            && first.version == last.version
        {
            let version = first.version;
            let rest_start = format!("({}-{}", version, records.len());
            let rest_end = format!("{version}-18446744073709551615");
            let mut connection = self.shared.commands.clone();
            let rest: Value = self
                .run(
                    "journal",
                    redis::cmd("XRANGE").arg(&k.journal).arg(&rest_start).arg(&rest_end).query_async(&mut connection),
                )
                .await?;
            records.extend(parse_entries(rest)?);
        }
        // Entries past the counter belong to a stream from before a reset counter.
        records.retain(|record| record.version <= version);
        let (records, more) = whole_versions(records, limit);
        Ok(JournalPage { records, version, trimmed_through, more, unchanged: Vec::new() })
    }

    /// The records of `key`, newest first: the stream read backwards in steps.
    pub(crate) async fn key_history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        let mut found = Vec::new();
        let mut end = "+".to_owned();
        while found.len() < limit {
            let mut connection = self.shared.commands.clone();
            let command = redis::cmd("XREVRANGE")
                .arg(&self.keys.journal)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(HISTORY_STEP)
                .to_owned();
            let entries: Value = self.run("history", command.query_async(&mut connection)).await?;
            let (records, last_id) = parse_entries_with_last_id(entries)?;
            let Some(last_id) = last_id else { break };
            found.extend(records.into_iter().filter(|record| record.key == key));
            end = format!("({last_id}");
        }
        found.truncate(limit);
        Ok(found)
    }
}

fn parse_entries(entries: Value) -> Result<Vec<JournalRecord>> {
    parse_entries_with_last_id(entries).map(|(records, _)| records)
}

/// Stream entries as records, and the ID of the last entry (to page on).
fn parse_entries_with_last_id(entries: Value) -> Result<(Vec<JournalRecord>, Option<String>)> {
    let Value::Array(entries) = entries else {
        return Err(unexpected(format!("expected stream entries, got {entries:?}")));
    };
    let mut records = Vec::with_capacity(entries.len());
    let mut last_id = None;
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(unexpected("a stream entry that is not [id, fields]"));
        };
        let (Some(fields), Some(id)) = (parts.pop(), parts.pop()) else {
            return Err(unexpected("a stream entry that is not [id, fields]"));
        };
        let id = text(id)?;
        let version = id
            .split_once('-')
            .and_then(|(version, _)| version.parse::<Version>().ok())
            .ok_or_else(|| unexpected(format!("a journal entry ID {id:?} that names no version")))?;
        last_id = Some(id);
        let pairs: Vec<Value> = match fields {
            Value::Array(items) => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => return Err(unexpected(format!("stream entry fields {other:?}"))),
        };
        let mut record = JournalRecord {
            version,
            key: String::new(),
            old: None,
            new: None,
            actor: String::new(),
            reason: None,
            time: None,
        };
        let mut pairs = pairs.into_iter();
        while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
            match text(name)?.as_str() {
                "k" => record.key = text(value)?,
                "o" => record.old = Some(bytes(value)?),
                "n" => record.new = Some(bytes(value)?),
                "a" => record.actor = text(value)?,
                "r" => record.reason = Some(text(value)?),
                "t" => record.time = text(value)?.parse::<i64>().ok().and_then(time_from_millis),
                _ => {}
            }
        }
        records.push(record);
    }
    Ok((records, last_id))
}

fn bytes(value: Value) -> Result<Bytes> {
    match value {
        Value::BulkString(raw) => Ok(Bytes::from(raw)),
        Value::SimpleString(text) => Ok(Bytes::from(text)),
        other => Err(unexpected(format!("expected a string in a journal entry, got {other:?}"))),
    }
}

fn text(value: Value) -> Result<String> {
    let raw = bytes(value)?;
    String::from_utf8(raw.to_vec()).map_err(|_| unexpected("a journal entry field that is not UTF-8"))
}
