//! The NDJSON file `export` writes and `import`, `diff` and `push` read.
//!
//! ```text
//! {"durable_export":1,"namespace":"flags","version":42,"codec":"json","keys":2}
//! {"key":"beta","value":true}
//! {"key":"motd","text":"Hello there"}
//! {"key":"logo","bytes":"iVBORw0KGgo="}
//! ```
//!
//! The first line is the header of a full export: the namespace, the version it was read
//! at, what the values are (`json` when every value is JSON text, `bytes` when none is,
//! `mixed`) and the key count. Each further line is one key: `value` carries a value that
//! is JSON text exactly as stored (byte for byte), `text` other UTF-8 text (durable's `Raw`
//! strings), `bytes` any other value in base64, and
//! `{"key":"k","delete":true}` a deletion (in a file of staged changes). A file with the
//! header is a whole namespace; without it, a set of changes.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::CliError;

/// The header line of a full export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The format's version: 1.
    pub durable_export: u32,
    pub namespace: String,
    pub version: u64,
    pub codec: String,
    pub keys: usize,
}

/// One key's line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    key: String,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete: Option<bool>,
}

/// A stored value as JSON text when it is exactly that (so it shows and round-trips as
/// itself), else `None`.
pub fn as_json(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get() == text && !text.contains('\n')).then_some(text)
}

/// One key's line of the file.
pub fn entry_line(key: &str, value: Option<&[u8]>) -> String {
    let mut line = Line { key: key.to_owned(), value: None, text: None, bytes: None, delete: None };
    match value {
        Some(value) => match (as_json(value), std::str::from_utf8(value)) {
            (Some(json), _) => line.value = serde_json::from_str(json).ok(),
            (None, Ok(text)) => line.text = Some(text.to_owned()),
            (None, Err(_)) => line.bytes = Some(STANDARD.encode(value)),
        },
        None => line.delete = Some(true),
    }
    serde_json::to_string(&line).expect("a line serializes")
}

/// What `codec` the header names for these values.
pub fn codec_of<'a>(values: impl Iterator<Item = &'a Bytes>) -> &'static str {
    let (mut json, mut other) = (false, false);
    for value in values {
        if as_json(value).is_some() {
            json = true;
        } else {
            other = true;
        }
    }
    match (json, other) {
        (_, false) => "json",
        (false, true) => "bytes",
        (true, true) => "mixed",
    }
}

/// A file read: its header (a full export) or none (staged changes), and each key's new
/// state (`None`: delete), in key order.
#[derive(Debug, Default)]
pub struct Staged {
    pub header: Option<Header>,
    pub changes: BTreeMap<String, Option<Bytes>>,
}

/// Reads a whole file before anything is written; a bad line fails naming its number.
pub fn parse(text: &str, name: &str) -> Result<Staged, CliError> {
    let mut staged = Staged::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let bad = |what: String| CliError::Input(format!("{name}, line {number}: {what}"));
        if line.trim().is_empty() {
            continue;
        }
        if number == 1 && line.contains("\"durable_export\"") {
            let header: Header = serde_json::from_str(line).map_err(|err| bad(format!("not a header: {err}")))?;
            if header.durable_export != 1 {
                return Err(bad(format!("format version {} is not 1", header.durable_export)));
            }
            staged.header = Some(header);
            continue;
        }
        let entry: Line = serde_json::from_str(line).map_err(|err| bad(format!("not a key's line: {err}")))?;
        let state = match (entry.value, entry.text, entry.bytes, entry.delete) {
            (Some(value), None, None, None) => Some(Bytes::copy_from_slice(value.get().as_bytes())),
            (None, Some(text), None, None) => Some(Bytes::from(text)),
            (None, None, Some(encoded), None) => {
                Some(Bytes::from(STANDARD.decode(encoded).map_err(|err| bad(format!("bad base64: {err}")))?))
            }
            (None, None, None, Some(true)) => None,
            _ => {
                return Err(bad("a line has exactly one of \"value\", \"text\", \"bytes\" or \"delete\": true".into()));
            }
        };
        if staged.header.is_some() && state.is_none() {
            return Err(bad("a full export holds no deletions".into()));
        }
        if staged.changes.insert(entry.key.clone(), state).is_some() {
            return Err(bad(format!("key {:?} appears twice", entry.key)));
        }
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_byte_for_byte() {
        for value in [&b"{\"a\": 1.0, \"b\": [true]}"[..], b"\"x\"", b"\xff\x00msgpack", b"{\n\"pretty\": 1}", b" 1"] {
            let line = entry_line("k", Some(value));
            let staged = parse(&line, "f").unwrap();
            assert_eq!(staged.changes["k"].as_deref(), Some(value), "{line}");
        }
        let staged = parse(&entry_line("gone", None), "f").unwrap();
        assert_eq!(staged.changes["gone"], None);
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let text = format!("{}\n{}\nnot json\n", entry_line("a", Some(b"1")), entry_line("b", Some(b"2")));
        let err = parse(&text, "staged.ndjson").unwrap_err().to_string();
        assert!(err.contains("staged.ndjson, line 3"), "{err}");
        let err = parse("{\"key\":\"a\",\"value\":1,\"bytes\":\"AA==\"}", "f").unwrap_err().to_string();
        assert!(err.contains("exactly one"), "{err}");
    }
}
