//! The ZooKeeper key rule never panics, and every key it accepts is one znode name that
//! ZooKeeper takes: non-empty, no `/`, not `.`/`..`, no NUL or other forbidden character,
//! nothing past U+FFFF, at most the maximum length.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else { return };
    if durable_zk::validate_key(key).is_ok() {
        assert!(!key.is_empty() && key.len() <= durable_zk::MAX_KEY_LEN);
        assert!(!key.contains('/') && key != "." && key != "..");
        for c in key.chars() {
            let u = c as u32;
            assert!(u <= 0xFFFF, "{c:?} is past U+FFFF");
            assert!(
                !(u == 0 || (0x1..=0x1F).contains(&u) || (0x7F..=0x9F).contains(&u)),
                "{c:?} is a control character"
            );
            assert!(!(0xE000..=0xF8FF).contains(&u) && !(0xFFF0..=0xFFFF).contains(&u), "{c:?} is forbidden");
        }
    }
});
