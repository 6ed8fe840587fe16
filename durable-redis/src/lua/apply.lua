-- ARGV[3]: the version the namespace must be at ('' for no guard); ARGV[4..]: op, key, value
-- triples (op 'p' puts the value, 'd' deletes the key; a delete's value is '') → the new
-- version; nil when nothing changed (only deletes of absent keys); {-1, current} when the
-- guard does not hold (nothing written).
if ARGV[3] ~= '' then
  local current = tonumber(redis.call('GET', KEYS[2]) or '0')
  if current ~= tonumber(ARGV[3]) then
    return {-1, current}
  end
end
local touched = {}
for i = 4, #ARGV, 3 do
  if ARGV[i] == 'p' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    table.insert(touched, ARGV[i + 1])
  elseif redis.call('HDEL', KEYS[1], ARGV[i + 1]) == 1 then
    table.insert(touched, ARGV[i + 1])
  end
end
if #touched == 0 then
  return false
end
return commit(touched)
