-- KEYS: commands, motor, outbox. ARGV: device, now_ms.
-- Returns nil (queue empty) or {cid, rounds, speed, done, pulses done}; a resumed command keeps its
-- progress.
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head == 0 then return nil end
local f = fields(head[1][2])
local rounds = tonumber(f.rounds)
if redis.call('HGET', KEYS[2], 'cur') ~= f.cid then
  redis.call('HSET', KEYS[2], 'cur', f.cid, 'done', 0, 'pd', 0, 'started', ARGV[2])
end
-- The start is a progress report too: the first round's report waits out the interval from here.
redis.call('HSET', KEYS[2], 'state', 'running', 'pts', ARGV[2])
local done = num(redis.call('HGET', KEYS[2], 'done'))
emit(KEYS[2], KEYS[3], ARGV[1], ARGV[2], {state = 'running', commandId = f.cid, commandRounds = rounds,
  commandRoundsDone = done, commandDone = false, queuedRounds = num(redis.call('HGET', KEYS[2], 'q')),
  receivedTs = tonumber(f.received), startedTs = num(redis.call('HGET', KEYS[2], 'started'))})
return {f.cid, f.rounds, f.speed, done, num(redis.call('HGET', KEYS[2], 'pd'))}
