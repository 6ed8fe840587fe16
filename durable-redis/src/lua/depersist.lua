-- ARGV[A + 1]: key → the new version, or nil when the key was absent (no bump).
local key = ARGV[A + 1]
local old = redis.call('HGET', KEYS[1], key)
if not old then
  return false
end
redis.call('HDEL', KEYS[1], key)
return commit({{key, old, false}})
