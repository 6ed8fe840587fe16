//! The backup file decoder never panics on any bytes, and what it accepts has a sane shape.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(backup) = durable_core::decode_backup(Path::new("fuzz"), data) {
        let payload: usize = backup.entries.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
        assert!(payload <= data.len(), "entries larger than the file");
    }
});
