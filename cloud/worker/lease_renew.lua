-- Extends a shard lease only while it still holds the caller's id.
-- KEYS[1] the lease key; ARGV[1] the worker id, ARGV[2] the lease TTL in ms. Returns 1 if renewed.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
