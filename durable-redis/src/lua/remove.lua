-- Removes a namespace: deletes every key of its layout (KEYS: the hash, the counter, the
-- change log, its head and floor, the journal, its trim mark, the leases) in one step,
-- then hints on ARGV[1] without a version, so that followers ask and find it gone.
-- Returns how many keys it deleted.
local deleted = redis.call('DEL', unpack(KEYS))
publish(ARGV[1], 'removed')
return deleted
