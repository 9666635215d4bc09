-- KEYS: commands, motor, outbox. ARGV: device, now_ms. Returns {cleared_rounds, cid...}.
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
local cur = redis.call('HGET', KEYS[2], 'cur')
local done = num(redis.call('HGET', KEYS[2], 'done'))
local result = {0}
for _, e in ipairs(entries) do
  local f = fields(e[2])
  local left = tonumber(f.rounds)
  if f.cid == cur then left = left - done end
  result[1] = result[1] + left
  table.insert(result, f.cid)
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'cur', 'done', 'pd', 'started')
redis.call('HSET', KEYS[2], 'q', 0, 'state', 'stopped')
emit(KEYS[2], KEYS[3], ARGV[1], ARGV[2], {state = 'stopped', queuedRounds = 0,
  roundsCompleted = num(redis.call('HGET', KEYS[2], 'rc'))})
return result
