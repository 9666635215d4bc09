-- Move a command to a new state, keeping the per-device counters balanced.
-- KEYS[1] command hash, KEYS[2] device counters, KEYS[3] open commands (zset by deadline).
-- ARGV: to-state, now ms, next deadline ms ('' = leave the open set), error text ('' = none),
--       '1' when this move is a send attempt, then the states it may move from.
-- Returns the state after the call, or false when the command does not exist.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return false
end
local to = ARGV[1]
local allowed = false
for i = 6, #ARGV do
  if ARGV[i] == state then allowed = true end
end
if not allowed then
  return state
end
local rounds = tonumber(redis.call('HGET', KEYS[1], 'rounds'))
local cid = string.match(KEYS[1], ':cmd:(.+)$')
if state ~= to then
  redis.call('HSET', KEYS[1], 'state', to, to .. 'At', ARGV[2])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
end
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
if state == 'queued' and (to == 'sent' or to == 'delivered' or to == 'done') then
  redis.call('HINCRBY', KEYS[2], 'sent', rounds)
end
if state == 'failed' then
  redis.call('HINCRBY', KEYS[2], 'failed', -rounds)
end
if to == 'done' then
  redis.call('HINCRBY', KEYS[2], 'done', rounds)
  redis.call('ZREM', KEYS[3], cid)
elseif to == 'failed' then
  redis.call('HINCRBY', KEYS[2], 'failed', rounds)
  redis.call('ZREM', KEYS[3], cid)
elseif ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[3], cid)
end
return to
