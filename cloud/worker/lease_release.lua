-- Deletes a lease key only while it still holds the caller's id (another may own it by now).
-- KEYS[1] the lease key; ARGV[1] the worker id. Returns 1 if deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
