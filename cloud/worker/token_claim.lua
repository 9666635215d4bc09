-- Takes the dispatcher token's lease if it is free or already ours (a restart with the same worker
-- id); renews it too. KEYS[1] the lease key; ARGV[1] the worker id, ARGV[2] the TTL in ms.
-- Returns 1 when the caller holds the lease.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
