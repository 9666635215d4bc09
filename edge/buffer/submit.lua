-- KEYS: commands, motor, seen, outbox. ARGV: device, cid, rounds, speed ('' = default), now_ms,
-- dedupe_ttl_s, max_queued_rounds, whether to begin it (1|0: the motor is idle and takes it at once).
-- Returns {status, queued, begun}: status 0 accepted, 1 duplicate, 2 queue full; begun is begin's
-- reply (command.lua) when the command was begun here, else false.
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {1, num(redis.call('HGET', KEYS[2], 'q')), false}
end
local q = num(redis.call('HGET', KEYS[2], 'q'))
local rounds = tonumber(ARGV[3])
if q + rounds > tonumber(ARGV[7]) then return {2, q, false} end
redis.call('XADD', KEYS[1], '*', 'cid', ARGV[2], 'rounds', ARGV[3], 'speed', ARGV[4], 'received', ARGV[5])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[6])
q = redis.call('HINCRBY', KEYS[2], 'q', rounds)
-- Begun here only when it is the whole queue and no command is current (a restart's resumed one
-- is): its start then says all its queued report would, in one entry instead of two.
if ARGV[8] == '1' and redis.call('XLEN', KEYS[1]) == 1 and not redis.call('HGET', KEYS[2], 'cur') then
  return {0, q, begin({KEYS[1], KEYS[2], KEYS[4]}, {ARGV[1], ARGV[5]})}
end
if not redis.call('HGET', KEYS[2], 'state') then redis.call('HSET', KEYS[2], 'state', 'idle') end
emit(KEYS[2], KEYS[4], ARGV[1], ARGV[5], {commandId = ARGV[2], commandRounds = rounds,
  commandRoundsDone = 0, commandDone = false, queuedRounds = q, receivedTs = tonumber(ARGV[5])})
return {0, q, false}
