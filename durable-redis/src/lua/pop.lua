-- ARGV[3]: key → {value, version}, or nil when absent.
local value = redis.call('HGET', KEYS[1], ARGV[3])
if not value then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[3])
return {value, commit({ARGV[3]})}
