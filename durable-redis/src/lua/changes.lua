-- ARGV[1]: since → {counter, key, version, value|false, ...}, or {-1} when the log cannot
-- explain every change since then (too old, trimmed, foreign writer, counter went back).
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local head = tonumber(redis.call('GET', KEYS[4]) or '0')
local floor = tonumber(redis.call('GET', KEYS[5]) or '0')
local since = tonumber(ARGV[1])
if since > counter or head ~= counter or since < floor then
  return {-1}
end
local out = {counter}
local changed = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. since, '+inf', 'WITHSCORES')
for i = 1, #changed, 2 do
  table.insert(out, changed[i])
  table.insert(out, tonumber(changed[i + 1]))
  table.insert(out, redis.call('HGET', KEYS[1], changed[i]))
end
return out
