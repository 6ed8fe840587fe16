-- ARGV[A + 1]: key, ARGV[A + 2]: '1' if a value is expected, ARGV[A + 3]: expected,
-- ARGV[A + 4]: '1' if a new value is given, ARGV[A + 5]: new → the version, the string
-- 'conflict', or nil when the key was absent as expected and there is nothing to delete
-- (no bump).
local key = ARGV[A + 1]
local current = redis.call('HGET', KEYS[1], key)
local expected = false
if ARGV[A + 2] == '1' then expected = ARGV[A + 3] end
if current ~= expected then
  return 'conflict'
end
if ARGV[A + 4] == '1' then
  redis.call('HSET', KEYS[1], key, ARGV[A + 5])
  return commit({{key, current, ARGV[A + 5]}})
elseif current then
  redis.call('HDEL', KEYS[1], key)
  return commit({{key, current, false}})
end
return false
