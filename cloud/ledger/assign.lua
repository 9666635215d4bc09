-- Create a command over events that no command carries yet, atomically with their assignment.
-- KEYS[1] command hash, KEYS[2] device counters, KEYS[3] open commands (zset by deadline),
-- KEYS[4] device names set, KEYS[5..n] one assignment key per event (all one cluster slot).
-- ARGV: commandId, device, rounds, requestedRounds, now ms, ttl s, deadline ms, events JSON.
-- Returns {'created'}, {'exists', state}, or {'conflict', index1, owner1, index2, owner2, ...}
-- when some events already belong to another command (or were skipped): then nothing is written.
local conflicts = {'conflict'}
for i = 5, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1] then
    conflicts[#conflicts + 1] = tostring(i - 4)
    conflicts[#conflicts + 1] = owner
  end
end
if #conflicts > 1 then
  return conflicts
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGET', KEYS[1], 'state')}
end
redis.call('HSET', KEYS[1], 'device', ARGV[2], 'rounds', ARGV[3], 'requestedRounds', ARGV[4],
  'state', 'queued', 'attempts', 0, 'queuedAt', ARGV[5], 'events', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[6])
for i = 5, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[6])
end
redis.call('HINCRBY', KEYS[2], 'accepted', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'capped', tonumber(ARGV[4]) - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return {'created'}
