-- Shared by fence.lua and lease.lua: the server's clock in ms, and a key's record in the
-- leases hash ('token|expires|holder') as token, expires, holder (0, 0, '' when none).
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function lease_of(hash, key)
  local raw = redis.call('HGET', hash, key)
  if not raw then
    return 0, 0, ''
  end
  local token, expires, holder = string.match(raw, '^(%d+)|(%d+)|(.*)$')
  return tonumber(token), tonumber(expires), holder
end
