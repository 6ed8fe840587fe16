//! The objects' bytes: a commit (one log object) and a checkpoint (the whole namespace),
//! each framed as `DUR` + kind + format version + CRC-32 of the body + body, the body in
//! MessagePack (a checkpoint's LZ4-compressed). A frame that is short, has another magic or
//! a checksum that does not match is refused whole, never half-read.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A stored value: inline, or an object of its own under `blobs/`, named by its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Val {
    /// The value's bytes.
    Inline(Bytes),
    /// The object `blobs/<hash>` (SHA-256, hex) holds the value's `len` bytes. Written by
    /// format 1 only: shared by every commit of the same bytes, so never collected.
    Blob { hash: String, len: u64 },
    /// The object `blobs/<hash>-<id>` (the writing commit's id in 16 hex digits) holds the
    /// value's `len` bytes: one object per commit, never reused, so the clean-up removes it
    /// once no kept checkpoint and no log object refers to it.
    Large { hash: String, len: u64, id: u64 },
}

impl Val {
    /// The name under `blobs/` of the object holding a large value, and its content hash.
    pub fn object(&self) -> Option<(String, &str)> {
        match self {
            Val::Inline(_) => None,
            Val::Blob { hash, .. } => Some((hash.clone(), hash)),
            Val::Large { hash, id, .. } => Some((format!("{hash}-{id:016x}"), hash)),
        }
    }
}

/// One key's change in a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Change {
    pub key: String,
    /// The value after the commit; `None`: deleted.
    pub new: Option<Val>,
    /// The value before it, for the journal (`None` when absent before or not journaled).
    pub old: Option<Val>,
}

/// One log object: every change of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Commit {
    /// The version this commit makes (the log object's name says it too).
    pub version: u64,
    /// Random: the writer recognises its own commit when a retried create meets it.
    pub id: u64,
    /// Whether the writer keeps a journal: then `old`, `actor` and `reason` are recorded.
    pub journaled: bool,
    pub actor: Option<String>,
    pub reason: Option<String>,
    /// Journal retention: records at or below this version are trimmed from now on.
    pub trim_through: u64,
    pub changes: Vec<Change>,
    /// Lease data: a lease operation (then `changes` is empty), or the fencing tokens a
    /// write carries. Absent in commits without either, which keep format 1 byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseData>,
}

/// What a commit says about leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LeaseData {
    /// A lease operation on `key` by `holder`, decided when the commit is replayed.
    Op { key: String, holder: String, op: LeaseStep },
    /// The tokens the write presents, per key.
    Fences(Vec<(String, u64)>),
}

/// A lease operation as a commit records it (durations in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LeaseStep {
    Acquire { ttl_ms: i64 },
    Renew { token: u64, ttl_ms: i64 },
    Release { token: u64 },
}

/// A lease as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeptLease {
    pub key: String,
    pub token: u64,
    pub holder: String,
    pub expires_ms: i64,
}

/// The lease state a checkpoint carries when the namespace has any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseTable {
    /// Leases not yet ended by a release or found expired by a commit.
    pub leases: Vec<KeptLease>,
    /// The highest token ever granted per key.
    pub last_tokens: Vec<(String, u64)>,
    /// Versions above the journal's trim point whose write a lease refused (they changed
    /// nothing and are no journal records).
    pub void: Vec<u64>,
}

/// One checkpoint object: the namespace at a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub version: u64,
    /// The journal's trim point at this version.
    pub trim_through: u64,
    pub entries: Vec<(String, Val)>,
    /// Absent when the namespace never had a lease: the checkpoint keeps format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<LeaseTable>,
}

const MAGIC: &[u8; 3] = b"DUR";
/// Objects without lease data or large values of format 2 are written as format 1, which
/// every version reads; the others as format 2, which a version that knows neither refuses
/// whole rather than replaying a refused write as made or missing a value.
const FORMAT: u8 = 1;
const FORMAT_LEASES: u8 = 2;
const COMMIT: u8 = b'C';
const CHECKPOINT: u8 = b'K';
const HEADER: usize = 3 + 1 + 1 + 4;

/// Why an object's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("{0} bytes is shorter than the {HEADER}-byte header")]
    Short(usize),
    #[error("not a durable object of this kind (magic {0:?})")]
    Magic(Vec<u8>),
    #[error("format version {0} is not known to this version of durable")]
    Format(u8),
    #[error("checksum mismatch: the object is torn or damaged")]
    Checksum,
    #[error("undecodable body: {0}")]
    Body(String),
}

fn frame(kind: u8, format: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.push(format);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn unframe(kind: u8, bytes: &[u8]) -> Result<&[u8], Refused> {
    if bytes.len() < HEADER {
        return Err(Refused::Short(bytes.len()));
    }
    if &bytes[..3] != MAGIC || bytes[3] != kind {
        return Err(Refused::Magic(bytes[..4].to_vec()));
    }
    if bytes[4] != FORMAT && bytes[4] != FORMAT_LEASES {
        return Err(Refused::Format(bytes[4]));
    }
    let crc = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
    let body = &bytes[HEADER..];
    if crc32fast::hash(body) != crc {
        return Err(Refused::Checksum);
    }
    Ok(body)
}

impl Commit {
    pub fn encode(&self) -> Vec<u8> {
        let large =
            self.changes.iter().flat_map(|c| c.new.iter().chain(&c.old)).any(|v| matches!(v, Val::Large { .. }));
        let format = if self.lease.is_some() || large { FORMAT_LEASES } else { FORMAT };
        frame(COMMIT, format, &rmp_serde::to_vec(self).expect("a commit always encodes"))
    }

    /// Decodes a commit, checking it is the one its object's name says.
    pub fn decode(bytes: &[u8], version: u64) -> Result<Self, Refused> {
        let commit: Self = rmp_serde::from_slice(unframe(COMMIT, bytes)?).map_err(|e| Refused::Body(e.to_string()))?;
        if commit.version != version {
            return Err(Refused::Body(format!("it says version {}, its name {version}", commit.version)));
        }
        Ok(commit)
    }
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let body = rmp_serde::to_vec(self).expect("a checkpoint always encodes");
        let large = self.entries.iter().any(|(_, val)| matches!(val, Val::Large { .. }));
        let format = if self.leases.is_some() || large { FORMAT_LEASES } else { FORMAT };
        frame(CHECKPOINT, format, &lz4_flex::compress_prepend_size(&body))
    }

    pub fn decode(bytes: &[u8], version: u64) -> Result<Self, Refused> {
        let compressed = unframe(CHECKPOINT, bytes)?;
        let body = lz4_flex::decompress_size_prepended(compressed).map_err(|e| Refused::Body(e.to_string()))?;
        let checkpoint: Self = rmp_serde::from_slice(&body).map_err(|e| Refused::Body(e.to_string()))?;
        if checkpoint.version != version {
            return Err(Refused::Body(format!("it says version {}, its name {version}", checkpoint.version)));
        }
        Ok(checkpoint)
    }
}

/// The content address of a large value: SHA-256 in hex.
pub(crate) fn content_hash(value: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(value).iter().map(|b| format!("{b:02x}")).collect()
}

/// An object name's version: `00000000000000000042` → 42.
pub(crate) fn parse_version(name: &str) -> Option<u64> {
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok()).flatten()
}

/// A version as an object name: 20 digits, so names sort as versions do.
pub(crate) fn version_name(version: u64) -> String {
    format!("{version:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit() -> Commit {
        Commit {
            version: 7,
            id: 99,
            journaled: true,
            actor: Some("me".into()),
            reason: None,
            trim_through: 0,
            changes: vec![Change { key: "k".into(), new: Some(Val::Inline(Bytes::from_static(b"v"))), old: None }],
            lease: None,
        }
    }

    #[test]
    fn objects_without_lease_data_keep_format_1_and_those_with_it_are_format_2() {
        let plain = commit();
        let bytes = plain.encode();
        assert_eq!(bytes[4], 1);
        // Format 1's body is the commit's first seven fields, as before leases existed.
        let body: Vec<serde::de::IgnoredAny> = rmp_serde::from_slice(&bytes[HEADER..]).unwrap();
        assert_eq!(body.len(), 7);
        let fenced = Commit { lease: Some(LeaseData::Fences(vec![("k".into(), 3)])), ..commit() };
        let bytes = fenced.encode();
        assert_eq!(bytes[4], 2);
        assert_eq!(Commit::decode(&bytes, 7).unwrap(), fenced);
        let op = LeaseData::Op { key: "k".into(), holder: "me".into(), op: LeaseStep::Renew { token: 2, ttl_ms: 800 } };
        let leasing = Commit { changes: Vec::new(), lease: Some(op), ..commit() };
        assert_eq!(Commit::decode(&leasing.encode(), 7).unwrap(), leasing);
        let table = LeaseTable {
            leases: vec![KeptLease { key: "k".into(), token: 2, holder: "me".into(), expires_ms: 9 }],
            last_tokens: vec![("k".into(), 2)],
            void: vec![5],
        };
        let k = Checkpoint { version: 3, trim_through: 0, entries: Vec::new(), leases: Some(table) };
        let bytes = k.encode();
        assert_eq!((bytes[4], Checkpoint::decode(&bytes, 3).unwrap()), (2, k));
        // Large values of an object per commit are format 2 too; shared ones stay format 1.
        let large = Val::Large { hash: content_hash(b"x"), len: 1, id: 0xab };
        assert_eq!(large.object().unwrap().0, format!("{}-00000000000000ab", content_hash(b"x")));
        let change = Change { key: "k".into(), new: Some(large.clone()), old: None };
        let c = Commit { changes: vec![change], ..commit() };
        assert_eq!((c.encode()[4], Commit::decode(&c.encode(), 7).unwrap()), (2, c));
        let k = Checkpoint { version: 3, trim_through: 0, entries: vec![("k".into(), large)], leases: None };
        assert_eq!(k.encode()[4], 2);
        let shared = Checkpoint { entries: vec![("k".into(), Val::Blob { hash: "h".into(), len: 1 })], ..k };
        assert_eq!(shared.encode()[4], 1);
    }

    #[test]
    fn commits_and_checkpoints_round_trip() {
        let c = commit();
        assert_eq!(Commit::decode(&c.encode(), 7).unwrap(), c);
        let k = Checkpoint {
            version: 3,
            trim_through: 1,
            entries: vec![("a".into(), Val::Blob { hash: content_hash(b"x"), len: 1 })],
            leases: None,
        };
        assert_eq!(Checkpoint::decode(&k.encode(), 3).unwrap(), k);
    }

    #[test]
    fn damaged_objects_are_refused_whole() {
        let bytes = commit().encode();
        assert_eq!(Commit::decode(&bytes[..5], 7), Err(Refused::Short(5)));
        let mut torn = bytes.clone();
        torn.truncate(bytes.len() - 1);
        assert_eq!(Commit::decode(&torn, 7), Err(Refused::Checksum));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(Commit::decode(&flipped, 7), Err(Refused::Checksum));
        assert!(matches!(Commit::decode(b"{\"json\": true}", 7), Err(Refused::Magic(_))));
        assert!(matches!(Commit::decode(&bytes, 8), Err(Refused::Body(_))), "a commit under another version's name");
        assert!(matches!(Checkpoint::decode(&bytes, 7), Err(Refused::Magic(_))), "a commit is no checkpoint");
    }

    #[test]
    fn names_sort_as_versions() {
        assert_eq!(version_name(42), "00000000000000000042");
        assert_eq!(parse_version(&version_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_version("42"), None);
        assert!(version_name(9) < version_name(10));
    }
}
