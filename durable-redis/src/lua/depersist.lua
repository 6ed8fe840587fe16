-- ARGV[3]: key → the new version, or nil when the key was absent (no bump).
if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then
  return false
end
return commit({ARGV[3]})
