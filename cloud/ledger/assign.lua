-- Create a command over events that no command carries yet, atomically with their assignment.
-- KEYS[1] command hash, KEYS[2] device counters, KEYS[3] open commands (zset by deadline),
-- KEYS[4] device names set, KEYS[5] the device's held commands (set), KEYS[6] devices with held
-- commands (set), KEYS[7..n] one assignment key per event (all one cluster slot).
-- ARGV: commandId, device, rounds, requestedRounds, now ms, ttl s, deadline ms, events JSON,
-- '1' when the device is held (the command is recorded held: not open, not to be sent).
-- Returns {'created', state}, {'exists', state}, or {'conflict', index1, owner1, index2, owner2, ...}
-- when some events already belong to another command (or were skipped): then nothing is written.
local conflicts = {'conflict'}
for i = 7, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1] then
    conflicts[#conflicts + 1] = tostring(i - 6)
    conflicts[#conflicts + 1] = owner
  end
end
if #conflicts > 1 then
  return conflicts
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGET', KEYS[1], 'state')}
end
local state = 'queued'
if ARGV[9] == '1' then
  state = 'held'
end
redis.call('HSET', KEYS[1], 'device', ARGV[2], 'rounds', ARGV[3], 'requestedRounds', ARGV[4],
  'state', state, 'attempts', 0, state .. 'At', ARGV[5], 'events', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[6])
for i = 7, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[6])
end
redis.call('HINCRBY', KEYS[2], 'accepted', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'capped', tonumber(ARGV[4]) - tonumber(ARGV[3]))
if state == 'held' then
  redis.call('HINCRBY', KEYS[2], 'held', ARGV[3])
  redis.call('SADD', KEYS[5], ARGV[1])
  redis.call('SADD', KEYS[6], ARGV[2])
else
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
end
redis.call('SADD', KEYS[4], ARGV[2])
return {'created', state}
