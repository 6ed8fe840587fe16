//! Codecs: how a value becomes the bytes a store holds, and back.
//!
//! - [`Json`] writes exactly what durabledict's `JSONEncoding` (Python's `json.dumps` with
//!   its defaults) writes — `", "` and `": "` separators, non-ASCII escaped as `\uXXXX` — so
//!   a Python service and a Rust service share one dict byte for byte, and a
//!   compare-and-swap written in either language matches values written in the other.
//! - [`MsgPack`] is MessagePack with named fields (rmp-serde), compact and schema-tolerant.
//! - [`Raw`] keeps bytes and strings untouched.
//! - [`Lz4`] compresses what any other codec writes.
//!
//! Values are decoded once, when a sync brings them in, never on a read.

use std::io;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Source;

/// Turns values of type `V` into bytes and back. Implementations are cheap to clone and
/// shared by every sync of a dict.
pub trait Codec<V>: Send + Sync + 'static {
    /// Encodes a value.
    fn encode(&self, value: &V) -> Result<Bytes, Source>;
    /// Decodes a value; garbage is an error, never a panic.
    fn decode(&self, bytes: &[u8]) -> Result<V, Source>;
}

/// JSON as durabledict's `JSONEncoding` reads and writes it (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned> Codec<V> for Json {
    fn encode(&self, value: &V) -> Result<Bytes, Source> {
        let mut out = Vec::with_capacity(64);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonJsonFormatter);
        value.serialize(&mut ser).map_err(Source::new)?;
        Ok(Bytes::from(out))
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, Source> {
        serde_json::from_slice(bytes).map_err(Source::new)
    }
}

/// serde_json formatting that matches Python's `json.dumps(value)` with default arguments.
struct PythonJsonFormatter;

impl serde_json::ser::Formatter for PythonJsonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    // `ensure_ascii=True`: every character past ASCII as \uXXXX (UTF-16, surrogate pairs).
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// MessagePack with named fields (rmp-serde's `to_vec_named`), so fields can be added to a
/// value type without breaking older readers.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl<V: Serialize + DeserializeOwned> Codec<V> for MsgPack {
    fn encode(&self, value: &V) -> Result<Bytes, Source> {
        rmp_serde::to_vec_named(value).map(Bytes::from).map_err(Source::new)
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, Source> {
        rmp_serde::from_slice(bytes).map_err(Source::new)
    }
}

/// Bytes and strings stored untouched (durabledict's `NoOpEncoding`). Strings must be
/// UTF-8; anything else is reported as undecodable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn encode(&self, value: &Bytes) -> Result<Bytes, Source> {
        Ok(value.clone())
    }
    fn decode(&self, bytes: &[u8]) -> Result<Bytes, Source> {
        Ok(Bytes::copy_from_slice(bytes))
    }
}

impl Codec<Vec<u8>> for Raw {
    fn encode(&self, value: &Vec<u8>) -> Result<Bytes, Source> {
        Ok(Bytes::copy_from_slice(value))
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, Source> {
        Ok(bytes.to_vec())
    }
}

impl Codec<String> for Raw {
    fn encode(&self, value: &String) -> Result<Bytes, Source> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
    fn decode(&self, bytes: &[u8]) -> Result<String, Source> {
        std::str::from_utf8(bytes).map(str::to_owned).map_err(Source::new)
    }
}

/// LZ4 compression around another codec: `Lz4<Json>`, `Lz4<MsgPack>`. The stored form is
/// lz4_flex's size-prepended block (a little-endian `u32` length, then the block).
#[derive(Debug, Clone, Copy, Default)]
pub struct Lz4<C> {
    inner: C,
}

impl<C> Lz4<C> {
    /// Compresses what `inner` writes.
    pub fn new(inner: C) -> Self {
        Self { inner }
    }
}

/// LZ4 cannot expand data by more than about 255 times; a header claiming more is garbage,
/// and is refused before anything is allocated for it.
const LZ4_MAX_RATIO: usize = 255;

impl<V, C: Codec<V>> Codec<V> for Lz4<C> {
    fn encode(&self, value: &V) -> Result<Bytes, Source> {
        let plain = self.inner.encode(value)?;
        Ok(Bytes::from(lz4_flex::compress_prepend_size(&plain)))
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, Source> {
        let Some((header, block)) = bytes.split_first_chunk::<4>() else {
            return Err(Source::msg("lz4: value shorter than its 4-byte length header"));
        };
        let claimed = u32::from_le_bytes(*header) as usize;
        if claimed > block.len().saturating_mul(LZ4_MAX_RATIO).saturating_add(16) {
            return Err(Source::msg(format!(
                "lz4: header claims {claimed} bytes from a {}-byte block; not LZ4 data",
                block.len()
            )));
        }
        let plain = lz4_flex::decompress(block, claimed).map_err(Source::new)?;
        self.inner.decode(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_round_trip_exactly() {
        // Found by the codec_json fuzz target: serde_json's default float parsing may be one
        // unit in the last place off; with `float_roundtrip` it is exact, as Python's is.
        for text in [&b"222222222222222222222222222222222222222222222222227.2"[..], b"0.1", b"1e308", b"5e-324"] {
            let value: serde_json::Value = Codec::<serde_json::Value>::decode(&Json, text).unwrap();
            let again = Codec::<serde_json::Value>::encode(&Json, &value).unwrap();
            assert_eq!(
                Codec::<serde_json::Value>::decode(&Json, &again).unwrap(),
                value,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn json_matches_python_json_dumps() {
        // `json.dumps({"a": [1, 2, {"b": None}], "c": "é☃😀", "d": True})` in CPython 3.
        let value = json!({"a": [1, 2, {"b": null}], "c": "é☃😀", "d": true});
        let bytes = Codec::<serde_json::Value>::encode(&Json, &value).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"a": [1, 2, {"b": null}], "c": "\u00e9\u2603\ud83d\ude00", "d": true}"#
        );
    }

    #[test]
    fn json_reads_python_output_and_compact_json() {
        let python = br#"{"name": "caf\u00e9", "on": false, "n": [1.5, -2]}"#;
        let compact = r#"{"name":"café","on":false,"n":[1.5,-2]}"#.as_bytes();
        let a: serde_json::Value = Json.decode(python).unwrap();
        let b: serde_json::Value = Json.decode(compact).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["name"], "café");
    }

    #[test]
    fn json_escapes_control_characters_like_python() {
        let bytes = Codec::<String>::encode(&Json, &"a\"b\\c\nd\u{1}".to_owned()).unwrap();
        assert_eq!(&bytes[..], br#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn msgpack_uses_named_fields() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Flag {
            enabled: bool,
            percent: u8,
        }
        let bytes = MsgPack.encode(&Flag { enabled: true, percent: 50 }).unwrap();
        assert!(bytes.windows(7).any(|w| w == b"enabled"), "field names are in the encoding");
        let back: Flag = MsgPack.decode(&bytes).unwrap();
        assert_eq!(back, Flag { enabled: true, percent: 50 });
    }

    #[test]
    fn raw_keeps_bytes_and_refuses_non_utf8_strings() {
        let bytes = Codec::<Vec<u8>>::encode(&Raw, &vec![0, 255, 7]).unwrap();
        assert_eq!(&bytes[..], &[0, 255, 7]);
        assert!(Codec::<String>::decode(&Raw, &[0xff, 0xfe]).is_err());
        assert_eq!(Codec::<String>::decode(&Raw, b"plain").unwrap(), "plain");
    }

    #[test]
    fn lz4_round_trips_and_compresses() {
        let codec = Lz4::new(Json);
        let value = json!({"text": "abc".repeat(1000)});
        let bytes = codec.encode(&value).unwrap();
        assert!(bytes.len() < 200, "3000 repeated bytes compress: got {}", bytes.len());
        let back: serde_json::Value = codec.decode(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn lz4_refuses_garbage_without_allocating_its_claim() {
        let codec = Lz4::new(Json);
        // Claims 4 GiB from three bytes of block.
        let garbage = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = Codec::<serde_json::Value>::decode(&codec, &garbage).unwrap_err();
        assert!(err.to_string().contains("not LZ4 data"), "{err}");
        assert!(Codec::<serde_json::Value>::decode(&codec, &[1, 2]).is_err());
        assert!(Codec::<serde_json::Value>::decode(&codec, b"{\"plain\": \"json\"}").is_err());
    }
}
