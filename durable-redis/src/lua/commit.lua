-- Shared by every mutation: bump the counter, log the touched keys, trim the log, journal
-- the changes, publish. `touched` lists {key, old value or false, new value or false}.
-- When the counter moved without us logging it (a durabledict writer, a flushed log), the
-- floor jumps to just below the new version, so older readers reload in full.
-- ARGV[1]: log length, ARGV[2]: channel, ARGV[3]: journal versions kept ('' = no journal,
-- '0' = all), ARGV[4]: journal age kept in ms ('0' = any age), ARGV[5]: actor, ARGV[6]:
-- reason ('' = none), ARGV[7]: trim every this many versions; the lease checks follow
-- (fence.lua, which also sets A: an operation's own arguments start at ARGV[A + 1]).
-- The hint goes out through `publish`, defined by publish.lua or spublish.lua before this.

-- One stream entry per changed key, ID <version>-<n>, with the server's clock. A stream
-- left from before a reset counter (its last ID at or past this version) is dropped first:
-- XADD would refuse the ID, and a failed command cannot undo the writes before it.
local function journal(v, touched)
  local t = redis.call('TIME')
  local ms = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  for i, c in ipairs(touched) do
    local fields = {'k', c[1], 'a', ARGV[5], 't', ms}
    if c[2] then
      table.insert(fields, 'o')
      table.insert(fields, c[2])
    end
    if c[3] then
      table.insert(fields, 'n')
      table.insert(fields, c[3])
    end
    if ARGV[6] ~= '' then
      table.insert(fields, 'r')
      table.insert(fields, ARGV[6])
    end
    local id = v .. '-' .. i
    if redis.pcall('XADD', KEYS[6], id, unpack(fields)).err then
      redis.call('DEL', KEYS[6])
      redis.call('XADD', KEYS[6], id, unpack(fields))
    end
  end
  local keep = tonumber(ARGV[3])
  local every = tonumber(ARGV[7])
  if v % every ~= 0 then
    return
  end
  local through = 0
  if keep > 0 and v > keep then
    through = v - keep
  end
  local age = tonumber(ARGV[4])
  if age > 0 then
    local cutoff = tonumber(ms) - age
    local oldest = redis.call('XRANGE', KEYS[6], '-', '+', 'COUNT', 1000)
    for _, entry in ipairs(oldest) do
      local fields = entry[2]
      local at = 0
      for j = 1, #fields, 2 do
        if fields[j] == 't' then at = tonumber(fields[j + 1]) end
      end
      if at >= cutoff then break end
      local ver = tonumber(string.match(entry[1], '^(%d+)-'))
      if ver > through then through = ver end
    end
  end
  if through > 0 then
    redis.call('XTRIM', KEYS[6], 'MINID', (through + 1) .. '-0')
    if through > tonumber(redis.call('GET', KEYS[7]) or '0') then
      redis.call('SET', KEYS[7], through)
    end
  end
end

local function commit(touched)
  local before = tonumber(redis.call('GET', KEYS[2]) or '0')
  local head = tonumber(redis.call('GET', KEYS[4]) or '-1')
  local v = redis.call('INCR', KEYS[2])
  if head ~= before then
    redis.call('SET', KEYS[5], v - 1)
  end
  for _, c in ipairs(touched) do
    redis.call('ZADD', KEYS[3], v, c[1])
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
  if ARGV[3] ~= '' then
    journal(v, touched)
  end
  publish(ARGV[2], v)
  return v
end
