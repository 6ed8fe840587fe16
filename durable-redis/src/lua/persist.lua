-- ARGV[3..]: key, value, key, value, ... → the new version.
local touched = {}
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  table.insert(touched, ARGV[i])
end
return commit(touched)
