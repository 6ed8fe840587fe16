-- One server: the hint goes out on the namespace's pub/sub channel.
local function publish(channel, message)
  redis.call('PUBLISH', channel, message)
end
