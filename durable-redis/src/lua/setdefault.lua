-- ARGV[A + 1]: key, ARGV[A + 2]: default → {value found}, or {default, version} when
-- inserted.
local key = ARGV[A + 1]
local found = redis.call('HGET', KEYS[1], key)
if found then
  return {found}
end
redis.call('HSET', KEYS[1], key, ARGV[A + 2])
return {ARGV[A + 2], commit({{key, false, ARGV[A + 2]}})}
