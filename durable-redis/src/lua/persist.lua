-- ARGV[A + 1]: key, ARGV[A + 2]: value → the new version.
local key = ARGV[A + 1]
local old = redis.call('HGET', KEYS[1], key)
redis.call('HSET', KEYS[1], key, ARGV[A + 2])
return commit({{key, old, ARGV[A + 2]}})
