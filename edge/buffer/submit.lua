-- KEYS: commands, motor, seen, outbox. ARGV: device, cid, rounds, speed ('' = default), now_ms,
-- dedupe_ttl_s, max_queued_rounds. Returns {status, queued}: 0 accepted, 1 duplicate, 2 queue full.
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {1, num(redis.call('HGET', KEYS[2], 'q'))}
end
local q = num(redis.call('HGET', KEYS[2], 'q'))
local rounds = tonumber(ARGV[3])
if q + rounds > tonumber(ARGV[7]) then return {2, q} end
redis.call('XADD', KEYS[1], '*', 'cid', ARGV[2], 'rounds', ARGV[3], 'speed', ARGV[4], 'received', ARGV[5])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[6])
q = redis.call('HINCRBY', KEYS[2], 'q', rounds)
if not redis.call('HGET', KEYS[2], 'state') then redis.call('HSET', KEYS[2], 'state', 'idle') end
emit(KEYS[2], KEYS[4], ARGV[1], ARGV[5], {commandId = ARGV[2], commandRounds = rounds,
  commandRoundsDone = 0, commandDone = false, queuedRounds = q, receivedTs = tonumber(ARGV[5])})
return {0, q}
