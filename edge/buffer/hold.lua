-- KEYS: motor, outbox. ARGV: device, now_ms, hold reason ('' lifts the hold), state, the e-stop
-- button's reading ('engaged' | 'released'; '' leaves it out).
-- Returns the queued rounds. The hold ('hold') outlives a restart; the queue is left as it is, so
-- a command stopped mid-way resumes from its checkpoint.
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'hold')
else
  redis.call('HSET', KEYS[1], 'hold', ARGV[3])
end
redis.call('HSET', KEYS[1], 'state', ARGV[4])
local values = {state = ARGV[4], queuedRounds = num(redis.call('HGET', KEYS[1], 'q')),
  roundsCompleted = num(redis.call('HGET', KEYS[1], 'rc'))}
if ARGV[5] ~= '' then values.estop = ARGV[5] end
emit(KEYS[1], KEYS[2], ARGV[1], ARGV[2], values)
return values.queuedRounds
