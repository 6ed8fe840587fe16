//! flagd's custom JsonLogic operators, with flagd's exact semantics: `fractional`
//! (both bucketings), `sem_ver`, `starts_with` and `ends_with`. Each answers `null` on
//! input it cannot use, so that the flag's default variant is served, as flagd does.
//! (datalogic-rs's own `flagd` feature is not used: its `fractional` takes only string
//! variants, where flagd's also takes booleans, numbers and `null` — flagd-testbed's
//! "fractional as condition" scenarios.)

use datalogic_rs::bumpalo::Bump;
use datalogic_rs::operator::EvalContext;
use datalogic_rs::{ArenaExt, CustomOperator, DataValue};

use crate::compile::Bucketing;

/// `starts_with` / `ends_with`: `[value, affix]`, both strings, else `null`.
pub(crate) struct Affix {
    pub(crate) suffix: bool,
}

impl CustomOperator for Affix {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let [value, affix] = args else { return Ok(arena.null()) };
        let (Some(value), Some(affix)) = (value.as_str(), affix.as_str()) else { return Ok(arena.null()) };
        Ok(arena.bool(if self.suffix { value.ends_with(affix) } else { value.starts_with(affix) }))
    }
}

/// `fractional`: `[bucketing key?, [variant, weight?]...]`. A string first argument is
/// the bucketing key, a `null` one is skipped; otherwise (or then) the key is the flag key
/// joined with the targeting key. The MurmurHash3 x86_32 hash (seed 0) of the key picks a
/// variant by weight ([`Bucketing`] says how); weights are integers (1 when absent,
/// negative ones count as 0) adding up to at most `i32::MAX`.
pub(crate) struct Fractional {
    pub(crate) bucketing: Bucketing,
}

impl CustomOperator for Fractional {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let Some((first, rest)) = args.split_first() else { return Ok(arena.null()) };
        let implicit;
        let (key, buckets): (&str, &[&DataValue<'a>]) = match first.as_str() {
            Some(key) => (key, rest),
            None => {
                let Some(key) = implicit_key(ctx.root_input()) else { return Ok(arena.null()) };
                implicit = key;
                (implicit.as_str(), if first.is_null() { rest } else { args })
            }
        };
        let Some(weighted) = weighted(buckets) else { return Ok(arena.null()) };
        let total: i64 = weighted.iter().map(|(_, weight)| weight).sum();
        if total <= 0 || total > i64::from(i32::MAX) {
            return Ok(arena.null());
        }
        let hash = murmur3_x86_32(key.as_bytes());
        let picked = match self.bucketing {
            Bucketing::V2 => {
                let bucket = (u64::from(hash) * total as u64) >> 32;
                let mut range_end = 0u64;
                weighted.into_iter().find(|(_, weight)| {
                    range_end += *weight as u64;
                    bucket < range_end
                })
            }
            Bucketing::V1 => {
                let bucket = f64::from(hash as i32).abs() / f64::from(i32::MAX) * 100.0;
                let mut range_end = 0.0;
                weighted.into_iter().find(|(_, weight)| {
                    range_end += 100.0 * *weight as f64 / total as f64;
                    bucket < range_end
                })
            }
        };
        Ok(picked.map_or_else(|| arena.null(), |(variant, _)| variant))
    }
}

/// `$flagd.flagKey` + `targetingKey`, or `None` without a non-empty targeting key.
fn implicit_key(root: &DataValue<'_>) -> Option<String> {
    let targeting_key = root.get("targetingKey").and_then(DataValue::as_str).filter(|key| !key.is_empty())?;
    let flag_key = root.get("$flagd").and_then(|flagd| flagd.get("flagKey")).and_then(DataValue::as_str).unwrap_or("");
    Some(format!("{flag_key}{targeting_key}"))
}

/// `[variant, weight?]` pairs — a variant is a string, a boolean, a number or `null`; the
/// weight an integer (1 when absent or `null`; negative ones count as 0, as flagd clamps
/// them) — or `None` when one is malformed.
fn weighted<'a>(buckets: &[&'a DataValue<'a>]) -> Option<Vec<(&'a DataValue<'a>, i64)>> {
    buckets
        .iter()
        .map(|bucket| {
            let pair = bucket.as_array()?;
            let variant = pair.first()?;
            if matches!(variant, DataValue::Array(_) | DataValue::Object(_)) {
                return None;
            }
            let weight = match pair.get(1) {
                None | Some(DataValue::Null) => 1,
                Some(weight) => {
                    let weight = weight.as_f64()?;
                    if weight.fract() != 0.0 || weight > f64::from(i32::MAX) {
                        return None;
                    }
                    (weight as i64).max(0)
                }
            };
            Some((variant, weight))
        })
        .collect()
}

/// `sem_ver`: `[version, operator, version]` compared as flagd does (Go's
/// `golang.org/x/mod/semver`): a leading `v`/`V` is optional, `1` and `1.2` mean `1.0.0`
/// and `1.2.0`, numbers are read as their text, build metadata is ignored; operators `=`,
/// `!=`, `<`, `<=`, `>`, `>=`, `^` (same major) and `~` (same major and minor).
pub(crate) struct SemVer;

impl CustomOperator for SemVer {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let [left, operator, right] = args else { return Ok(arena.null()) };
        let (Some(left), Some(operator), Some(right)) = (version(left), operator.as_str(), version(right)) else {
            return Ok(arena.null());
        };
        let answer = match operator {
            "=" => left == right,
            "!=" => left != right,
            "<" => left < right,
            "<=" => left <= right,
            ">" => left > right,
            ">=" => left >= right,
            "^" => left.major == right.major,
            "~" => left.major == right.major && left.minor == right.minor,
            _ => return Ok(arena.null()),
        };
        Ok(arena.bool(answer))
    }
}

/// A version as flagd reads one, or `None`.
fn version(value: &DataValue<'_>) -> Option<semver::Version> {
    let text = match value {
        DataValue::String(text) => (*text).to_owned(),
        DataValue::Number(_) => value.to_string(),
        _ => return None,
    };
    let text = text.strip_prefix(['v', 'V']).unwrap_or(&text);
    let text = text.split_once('+').map_or(text, |(core, _)| core);
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    // Go's semver takes `v1` and `v1.2` as short for `v1.0.0` and `v1.2.0`, but not with a
    // pre-release (`v1.2-beta` is invalid).
    let padded = match core.split('.').count() {
        1 if pre.is_none() => format!("{core}.0.0"),
        2 if pre.is_none() => format!("{core}.0"),
        3 => match pre {
            Some(pre) => format!("{core}-{pre}"),
            None => core.to_owned(),
        },
        _ => return None,
    };
    semver::Version::parse(&padded).ok()
}

/// MurmurHash3 x86_32 with seed 0 (the hash every flagd provider buckets with).
pub(crate) fn murmur3_x86_32(bytes: &[u8]) -> u32 {
    murmur3::murmur3_32(&mut std::io::Cursor::new(bytes), 0).expect("reading from memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::murmur3_x86_32;

    /// SMHasher's reference values.
    #[test]
    fn murmur3_matches_the_reference() {
        assert_eq!(murmur3_x86_32(b""), 0);
        assert_eq!(murmur3_x86_32(b"hello"), 0x248b_fa47);
        assert_eq!(murmur3_x86_32(b"The quick brown fox jumps over the lazy dog"), 0x2e4f_f723);
        assert_eq!(murmur3_x86_32(b"a"), 0x3c25_69b2);
        assert_eq!(murmur3_x86_32(b"abc"), 0xb3dd_93fa);
        assert_eq!(murmur3_x86_32(b"abcd"), 0x43ed_676a);
    }
}
