-- A cluster: the hint goes out on the namespace's shard channel (sharded pub/sub), so it
-- never leaves the namespace's shard.
local function publish(channel, message)
  redis.call('SPUBLISH', channel, message)
end
