//! `Json` writes exactly what Python's `json.dumps` writes (durabledict's `JSONEncoding`),
//! checked against real CPython over thousands of generated values, both ways:
//!
//! - values generated here: Python reads what `Json` wrote and writes it again with
//!   `json.dumps`; the bytes must be identical;
//! - values generated in Python: `Json` reads what `json.dumps` wrote and writes it again;
//!   the bytes must be identical.
//!
//! The values cover floats across every exponent (subnormals, 2^53 and past it, the
//! largest), integers over the whole 64-bit ranges, every control character, U+007F,
//! Latin-1, the rest of the BMP, text past the BMP (surrogate pairs), quotes, backslashes
//! and nesting.

use std::io::Write;
use std::process::{Command, Stdio};

use durable_core::conformance::require_service;
use durable_core::{Codec, Json};
use serde_json::{Map, Number, Value};

const VALUES: usize = 5000;

fn python_available() -> bool {
    Command::new("python3").arg("--version").output().is_ok_and(|out| out.status.success())
}

/// Runs `script` with `input` on stdin; returns stdout's lines.
fn python(script: &str, input: &[u8]) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("python3 output");
    feeder.join().expect("feeder").expect("write to python3");
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("python3 writes ASCII").lines().map(str::to_owned).collect()
}

fn float(rng: &mut fastrand::Rng) -> f64 {
    loop {
        let value = match rng.u8(..6) {
            // Any bit pattern: subnormals, huge, tiny.
            0 => f64::from_bits(rng.u64(..)),
            // A few digits at any decimal exponent.
            1 => rng.i64(-99_999..100_000) as f64 * 10f64.powi(rng.i32(-330..310)),
            // Around Python's switch between positional and scientific.
            2 => rng.f64() * 10f64.powi(rng.i32(-7..19)),
            // Integers held as floats, around and past 2^53.
            3 => (rng.u64(..1 << 60) >> rng.u32(..40)) as f64,
            4 => [0.0, -0.0, 0.1, 0.5, 1.0, 1e16, 1e-5, 1e22, 5e-324, f64::MAX, f64::MIN_POSITIVE][rng.usize(..11)],
            _ => rng.f64() - 0.5,
        };
        if value.is_finite() {
            return value;
        }
    }
}

fn text(rng: &mut fastrand::Rng) -> String {
    (0..rng.usize(..12))
        .map(|_| {
            let code = match rng.u8(..8) {
                0 => rng.u32(..0x20),
                1 => 0x7f,
                2 => rng.u32(0x80..0x100),
                3 => rng.u32(0x100..0xd800),
                4 => rng.u32(0xe000..0x10000),
                5 => rng.u32(0x10000..0x110000),
                6 => ['"', '\\', '/', ' ', '~'][rng.usize(..5)] as u32,
                _ => rng.u32(0x20..0x7f),
            };
            char::from_u32(code).expect("no surrogates were drawn")
        })
        .collect()
}

fn value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(..if depth < 3 { 9 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => Value::from(rng.i64(..) >> rng.u32(..64)),
        3 => Value::from(rng.u64(..)),
        4 => Value::from((1u64 << 53) + rng.u64(..1000) - 500),
        5 => Number::from_f64(float(rng)).map_or(Value::Null, Value::Number),
        6 => Value::String(text(rng)),
        7 => Value::Array((0..rng.usize(..5)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let map: Map<String, Value> = (0..rng.usize(..5)).map(|_| (text(rng), value(rng, depth + 1))).collect();
            Value::Object(map)
        }
    }
}

fn encode(value: &Value) -> String {
    let bytes = Json.encode(value).expect("encode");
    String::from_utf8(bytes.to_vec()).expect("Json writes ASCII")
}

#[test]
fn python_writes_again_exactly_what_json_wrote() {
    if !require_service("python3", python_available()) {
        return;
    }
    let mut rng = fastrand::Rng::with_seed(17);
    let ours: Vec<String> = (0..VALUES).map(|_| encode(&value(&mut rng, 0))).collect();
    let input = ours.join("\n") + "\n";
    let script = "import json, sys\nfor line in sys.stdin:\n    print(json.dumps(json.loads(line)))";
    let theirs = python(script, input.as_bytes());
    assert_eq!(theirs.len(), ours.len(), "one answer per value");
    let differ: Vec<_> = ours.iter().zip(&theirs).filter(|(a, b)| a != b).take(5).collect();
    assert!(differ.is_empty(), "ours vs json.dumps: {differ:#?}");
}

#[test]
fn json_writes_again_exactly_what_python_wrote() {
    if !require_service("python3", python_available()) {
        return;
    }
    // Python's own generator. Keys come in any order: Python's dict keeps insertion order,
    // and so does serde_json's map here (feature `preserve_order`), so a value read and
    // written again keeps its bytes — what a compare-and-swap over a Python value needs.
    let script = r#"
import json, random, struct, sys
rng = random.Random(23)
def fl():
    while True:
        k = rng.randrange(5)
        if k == 0: x = struct.unpack('<d', struct.pack('<Q', rng.getrandbits(64)))[0]
        elif k == 1: x = rng.randrange(-99999, 100000) * 10.0 ** rng.randrange(-300, 300)
        elif k == 2: x = rng.random() * 10.0 ** rng.randrange(-7, 19)
        elif k == 3: x = float(rng.getrandbits(60) >> rng.randrange(40))
        else: x = rng.random() - 0.5
        if x == x and abs(x) != float('inf'): return x
def tx():
    out = []
    for _ in range(rng.randrange(12)):
        k = rng.randrange(6)
        if k == 0: c = rng.randrange(0x20)
        elif k == 1: c = 0x7f
        elif k == 2: c = rng.randrange(0x80, 0xd800)
        elif k == 3: c = rng.randrange(0xe000, 0x110000)
        elif k == 4: c = ord(rng.choice('"\\/ ~'))
        else: c = rng.randrange(0x20, 0x7f)
        out.append(chr(c))
    return ''.join(out)
def val(d):
    k = rng.randrange(9 if d < 3 else 7)
    if k == 0: return None
    if k == 1: return rng.random() < 0.5
    if k == 2: return rng.randrange(-2**63, 2**63) >> rng.randrange(64)
    if k == 3: return rng.randrange(2**64)
    if k == 4: return fl()
    if k == 5: return 2**53 + rng.randrange(-500, 500)
    if k == 6: return tx()
    if k == 7: return [val(d + 1) for _ in range(rng.randrange(5))]
    return {tx(): val(d + 1) for _ in range(rng.randrange(5))}
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5000):
    print(json.dumps(val(0)))
"#;
    let theirs = python(script, b"");
    assert_eq!(theirs.len(), VALUES);
    let mut differ = Vec::new();
    for line in &theirs {
        let value: Value = Json.decode(line.as_bytes()).unwrap_or_else(|e| panic!("decode {line}: {e}"));
        let ours = encode(&value);
        if ours != *line {
            differ.push((line.clone(), ours));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {VALUES} differ, e.g. (python, ours): {:#?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );
}
