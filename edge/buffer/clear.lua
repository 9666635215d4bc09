-- KEYS: commands, motor, outbox. ARGV: device, now_ms, the seen markers' key without the commandId.
-- Returns {cleared_rounds, cid...}. Each cleared command's seen marker says 'cleared' from here on
-- (its TTL kept), for a re-ask (recall.lua). The marker keys are built here, not passed: the edge's
-- Redis is one local server (no cluster slots to declare), and the commandIds are only known here.
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
  redis.call('SET', ARGV[3] .. f.cid, 'cleared', 'XX', 'KEEPTTL')
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'cur', 'done', 'pd', 'started')
redis.call('HSET', KEYS[2], 'q', 0, 'state', 'stopped')
emit(KEYS[2], KEYS[3], ARGV[1], ARGV[2], {state = 'stopped', queuedRounds = 0,
  roundsCompleted = num(redis.call('HGET', KEYS[2], 'rc'))})
return result
