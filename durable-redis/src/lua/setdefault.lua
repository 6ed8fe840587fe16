-- ARGV[3]: key, ARGV[4]: default → {value found}, or {default, version} when inserted.
local found = redis.call('HGET', KEYS[1], ARGV[3])
if found then
  return {found}
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return {ARGV[4], commit({ARGV[3]})}
