//! The Json codec's decode never panics on any bytes, and what it decodes it re-encodes to
//! bytes that decode to the same value.
#![no_main]

use durable_core::{Codec, Json};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = Codec::<Value>::decode(&Json, data) {
        let again = Codec::<Value>::encode(&Json, &value).expect("a decoded value encodes");
        let back: Value = Codec::<Value>::decode(&Json, &again).expect("our own encoding decodes");
        assert_eq!(back, value);
    }
});
