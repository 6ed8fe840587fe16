-- ARGV[3]: key, ARGV[4]: '1' if a value is expected, ARGV[5]: expected, ARGV[6]: '1' if a
-- new value is given, ARGV[7]: new → the version, the string 'conflict', or nil when the
-- key was absent as expected and there is nothing to delete (no bump).
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
