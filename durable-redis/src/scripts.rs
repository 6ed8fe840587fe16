//! The Lua scripts behind every mutation and delta read: each runs atomically in Redis, in
//! one round trip.
//!
//! KEYS are always, in this order: the hash `<ns>`, the counter `<ns>last_updated`, the
//! change log `<ns>:log` (a sorted set: member = key, score = version of its latest change),
//! the log head `<ns>:log:head` (the counter value our last logged mutation left) and the
//! log floor `<ns>:log:floor` (deltas are only valid from this version on). ARGV[1] is the
//! log length and ARGV[2] the pub/sub channel; an operation's own arguments follow.

/// Shared by every mutation: bump the counter, log the touched keys, trim the log, publish.
/// When the counter moved without us logging it (a durabledict writer, a flushed log), the
/// floor jumps to just below the new version, so older readers reload in full.
const COMMIT: &str = r#"
local function commit(touched)
  local before = tonumber(redis.call('GET', KEYS[2]) or '0')
  local head = tonumber(redis.call('GET', KEYS[4]) or '-1')
  local v = redis.call('INCR', KEYS[2])
  if head ~= before then
    redis.call('SET', KEYS[5], v - 1)
  end
  for _, k in ipairs(touched) do
    redis.call('ZADD', KEYS[3], v, k)
  end
  redis.call('SET', KEYS[4], v)
  local max = tonumber(ARGV[1])
  local n = redis.call('ZCARD', KEYS[3])
  if n > max then
    local cut = redis.call('ZRANGE', KEYS[3], 0, n - max - 1, 'WITHSCORES')
    local top = tonumber(cut[#cut])
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - max - 1)
    if top > tonumber(redis.call('GET', KEYS[5]) or '0') then
      redis.call('SET', KEYS[5], top)
    end
  end
  redis.call('PUBLISH', ARGV[2], v)
  return v
end
"#;

fn with_commit(body: &str) -> String {
    format!("{COMMIT}\n{body}")
}

/// ARGV[3..]: key, value, key, value, ... → the new version.
pub fn persist() -> String {
    with_commit(
        r#"
local touched = {}
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  table.insert(touched, ARGV[i])
end
return commit(touched)
"#,
    )
}

/// ARGV[3]: key → the new version, or nil when the key was absent (no bump).
pub fn depersist() -> String {
    with_commit(
        r#"
if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then
  return false
end
return commit({ARGV[3]})
"#,
    )
}

/// ARGV[3]: key → {value, version}, or nil when absent.
pub fn pop() -> String {
    with_commit(
        r#"
local value = redis.call('HGET', KEYS[1], ARGV[3])
if not value then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[3])
return {value, commit({ARGV[3]})}
"#,
    )
}

/// ARGV[3]: key, ARGV[4]: default → {value found}, or {default, version} when inserted.
pub fn setdefault() -> String {
    with_commit(
        r#"
local found = redis.call('HGET', KEYS[1], ARGV[3])
if found then
  return {found}
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return {ARGV[4], commit({ARGV[3]})}
"#,
    )
}

/// ARGV[3]: key, ARGV[4]: '1' if a value is expected, ARGV[5]: expected, ARGV[6]: '1' if a
/// new value is given, ARGV[7]: new → the version, the string 'conflict', or nil when the
/// key was absent as expected and there is nothing to delete (no bump).
pub fn compare_and_swap() -> String {
    with_commit(
        r#"
local current = redis.call('HGET', KEYS[1], ARGV[3])
local expected = false
if ARGV[4] == '1' then expected = ARGV[5] end
if current ~= expected then
  return 'conflict'
end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[7])
elseif current then
  redis.call('HDEL', KEYS[1], ARGV[3])
else
  return false
end
return commit({ARGV[3]})
"#,
    )
}

/// ARGV[1]: since → {counter, key, version, value|false, ...}, or {-1} when the log cannot
/// explain every change since then (too old, trimmed, foreign writer, counter went back).
pub const CHANGES: &str = r#"
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local head = tonumber(redis.call('GET', KEYS[4]) or '0')
local floor = tonumber(redis.call('GET', KEYS[5]) or '0')
local since = tonumber(ARGV[1])
if since > counter or head ~= counter or since < floor then
  return {-1}
end
local out = {counter}
local changed = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. since, '+inf', 'WITHSCORES')
for i = 1, #changed, 2 do
  table.insert(out, changed[i])
  table.insert(out, tonumber(changed[i + 1]))
  table.insert(out, redis.call('HGET', KEYS[1], changed[i]))
end
return out
"#;
