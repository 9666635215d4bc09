-- KEYS: motor, outbox, recent done. ARGV: device, now_ms, state ('' keeps the stored one).
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[3]) end
local state = redis.call('HGET', KEYS[1], 'state') or 'idle'
local values = {state = state, queuedRounds = num(redis.call('HGET', KEYS[1], 'q')),
  roundsCompleted = num(redis.call('HGET', KEYS[1], 'rc'))}
local recent = redis.call('LRANGE', KEYS[3], 0, -1)
-- Left out when empty: cjson encodes an empty table as an object, not a list.
if #recent > 0 then values.recentDone = recent end
emit(KEYS[1], KEYS[2], ARGV[1], ARGV[2], values)
return state
