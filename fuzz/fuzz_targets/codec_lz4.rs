//! The Lz4 codec's decode never panics or allocates past its size guard on any bytes
//! (forged length headers included), and round-trips what it decodes.
#![no_main]

use durable_core::{Codec, Lz4, Raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Lz4::new(Raw);
    if let Ok(plain) = Codec::<Vec<u8>>::decode(&codec, data) {
        // LZ4 expands at most ~255x: the guard must have held.
        assert!(plain.len() <= data.len().saturating_mul(255) + 16);
        let again = Codec::<Vec<u8>>::encode(&codec, &plain).expect("encodes");
        assert_eq!(Codec::<Vec<u8>>::decode(&codec, &again).expect("our own encoding decodes"), plain);
    }
});
