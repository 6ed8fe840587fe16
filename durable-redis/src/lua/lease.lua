-- A lease operation on one key, judged by the server's clock. KEYS[1]: the leases hash
-- `<ns>:leases` (see fence.lua). ARGV[1]: the channel, ARGV[2]: 'a' acquire, 'r' renew or
-- 'x' release, ARGV[3]: the key, ARGV[4]: the token ('' to acquire), ARGV[5]: the ttl in ms,
-- ARGV[6]: the holder → {status, token, expires, now, holder}, status 1 granted (or
-- renewed), 0 held by another, -1 lost (renewal of a lease that is not live), 2 released,
-- 3 nothing to release. The token per key only grows: a release keeps it, with expires 0.
local now = server_ms()
local key = ARGV[3]
local token, expires, holder = lease_of(KEYS[1], key)
local live = expires > now
if ARGV[2] == 'a' then
  if live then
    return {0, token, expires, now, holder}
  end
  token = token + 1
  expires = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], key, token .. '|' .. expires .. '|' .. ARGV[6])
  return {1, token, expires, now, ARGV[6]}
end
local mine = live and token == tonumber(ARGV[4])
if ARGV[2] == 'r' then
  if not mine then
    return {-1, token, expires, now, holder}
  end
  expires = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], key, token .. '|' .. expires .. '|' .. holder)
  return {1, token, expires, now, holder}
end
if not mine then
  return {3, token, expires, now, holder}
end
redis.call('HSET', KEYS[1], key, token .. '|0|' .. holder)
publish(ARGV[1], 'lease')
return {2, token, 0, now, holder}
