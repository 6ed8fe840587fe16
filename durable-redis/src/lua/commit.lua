-- Shared by every mutation: bump the counter, log the touched keys, trim the log, publish.
-- When the counter moved without us logging it (a durabledict writer, a flushed log), the
-- floor jumps to just below the new version, so older readers reload in full.
-- The hint goes out through `publish`, defined by publish.lua or spublish.lua before this.
local function commit(touched)
  local before = tonumber(redis.call('GET', KEYS[2]) or '0')
  local head = tonumber(redis.call('GET', KEYS[4]) or '-1')
  local v = redis.call('INCR', KEYS[2])
  if head ~= before then
    redis.call('SET', KEYS[5], v - 1)
  end
  for _, k in ipairs(touched) do
    redis.call('ZADD', KEYS[3], v, k)
  end
  redis.call('SET', KEYS[4], v)
  local max = tonumber(ARGV[1])
  local n = redis.call('ZCARD', KEYS[3])
  if n > max then
    local cut = redis.call('ZRANGE', KEYS[3], 0, n - max - 1, 'WITHSCORES')
    local top = tonumber(cut[#cut])
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - max - 1)
    if top > tonumber(redis.call('GET', KEYS[5]) or '0') then
      redis.call('SET', KEYS[5], top)
    end
  end
  publish(ARGV[2], v)
  return v
end
