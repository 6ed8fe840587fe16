-- Leases, checked before the operation writes anything (an error reply after a write would
-- not undo it). KEYS[8], `<ns>:leases`, holds 'token|expires|holder' per key that ever had
-- a lease (expires, in ms by the server's clock, is 0 once released). ARGV[8]: how many
-- keys the write touches or fences, then a key and the token the write carries for it
-- ('' for none) each; an operation's own arguments start at ARGV[A + 1].
-- A key with a live lease is written only with its token: else the script fails with
-- 'LEASED <index> <token> <expires> <now> <holder>'; a token that is not the live lease's
-- fails with 'LEASE_LOST <index> <token>' (index: the key's place in the list, from 1).
local A = 8 + 2 * tonumber(ARGV[8])
if tonumber(ARGV[8]) > 0 and redis.call('EXISTS', KEYS[8]) == 1 then
  local now = server_ms()
  for i = 1, tonumber(ARGV[8]) do
    local fence = ARGV[8 + 2 * i]
    local token, expires, holder = lease_of(KEYS[8], ARGV[7 + 2 * i])
    local live = expires > now
    if fence ~= '' then
      if not (live and token == tonumber(fence)) then
        return redis.error_reply('LEASE_LOST ' .. i .. ' ' .. fence)
      end
    elseif live then
      return redis.error_reply('LEASED ' .. i .. ' ' .. token .. ' ' .. expires .. ' ' .. now .. ' ' .. holder)
    end
  end
elseif tonumber(ARGV[8]) > 0 then
  for i = 1, tonumber(ARGV[8]) do
    if ARGV[8 + 2 * i] ~= '' then
      return redis.error_reply('LEASE_LOST ' .. i .. ' ' .. ARGV[8 + 2 * i])
    end
  end
end
