//! The MsgPack codec's decode never panics on any bytes, and round-trips what it decodes.
#![no_main]

use durable_core::{Codec, MsgPack};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = Codec::<Value>::decode(&MsgPack, data) {
        let again = Codec::<Value>::encode(&MsgPack, &value).expect("a decoded value encodes");
        let back: Value = Codec::<Value>::decode(&MsgPack, &again).expect("our own encoding decodes");
        assert_eq!(back, value);
    }
});
