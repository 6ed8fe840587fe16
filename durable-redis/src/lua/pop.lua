-- ARGV[A + 1]: key → {value, version}, or nil when absent.
local key = ARGV[A + 1]
local value = redis.call('HGET', KEYS[1], key)
if not value then
  return false
end
redis.call('HDEL', KEYS[1], key)
return {value, commit({{key, value, false}})}
