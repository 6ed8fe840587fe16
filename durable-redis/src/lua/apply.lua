-- ARGV[A + 1]: the version the namespace must be at ('' for no guard); ARGV[A + 2..]: op,
-- key, value triples (op 'p' puts the value, 'd' deletes the key; a delete's value is '')
-- → the new version; nil when nothing changed (only deletes of absent keys); {-1, current}
-- when the guard does not hold (nothing written).
if ARGV[A + 1] ~= '' then
  local current = tonumber(redis.call('GET', KEYS[2]) or '0')
  if current ~= tonumber(ARGV[A + 1]) then
    return {-1, current}
  end
end
local touched = {}
for i = A + 2, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[1], ARGV[i + 1])
  if ARGV[i] == 'p' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    table.insert(touched, {ARGV[i + 1], old, ARGV[i + 2]})
  elseif old then
    redis.call('HDEL', KEYS[1], ARGV[i + 1])
    table.insert(touched, {ARGV[i + 1], old, false})
  end
end
if #touched == 0 then
  return false
end
return commit(touched)
