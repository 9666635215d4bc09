-- Move commands of one ledger shard to a new state, keeping the per-device counters balanced, and
-- optionally acknowledge stream entries in the same step, so the record and the ack are one.
-- KEYS[1] open commands (zset by deadline), KEYS[2] the shard's stream (same slot),
-- KEYS[3..] pairs: a command hash, its device's counters.
-- ARGV[1] to-state, ARGV[2] now ms, ARGV[3] next deadline ms ('' = leave the open set),
-- ARGV[4] error text ('' = none), ARGV[5] '1' when this move is a send attempt,
-- ARGV[6] consumer group to XACK in ('' = none), ARGV[7] n = how many states it may move from,
-- ARGV[8 .. 7+n] those states, ARGV[8+n] m = 0 or one per command: the send attempt the move
-- answers (a command whose attempts differ is left as it is: the answer is for a superseded send),
-- ARGV[9+n .. 8+n+m] those attempts, ARGV[9+n+m ..] stream entry ids to XACK.
-- Returns, per command, {its state after the call ('' when the command does not exist),
-- 1 when this call moved it (0 when its state or attempt did not allow it)}.
local to = ARGV[1]
local n = tonumber(ARGV[7])
local allowed = {}
for i = 8, 7 + n do
  allowed[ARGV[i]] = true
end
local m = tonumber(ARGV[8 + n])
local out = {}
for k = 3, #KEYS, 2 do
  local cmd, dev = KEYS[k], KEYS[k + 1]
  local state = redis.call('HGET', cmd, 'state')
  local superseded = false
  if state and m > 0 then
    local expected = tonumber(ARGV[8 + n + (k - 1) / 2])
    superseded = tonumber(redis.call('HGET', cmd, 'attempts') or '0') ~= expected
  end
  if not state then
    out[#out + 1] = {'', 0}
  elseif superseded or not allowed[state] then
    out[#out + 1] = {state, 0}
  else
    local rounds = tonumber(redis.call('HGET', cmd, 'rounds'))
    local cid = string.match(cmd, ':cmd:(.+)$')
    if state ~= to then
      redis.call('HSET', cmd, 'state', to, to .. 'At', ARGV[2])
    end
    if ARGV[4] ~= '' then
      redis.call('HSET', cmd, 'error', ARGV[4])
    end
    if ARGV[5] == '1' then
      redis.call('HINCRBY', cmd, 'attempts', 1)
    end
    if state == 'queued' and (to == 'sent' or to == 'delivered' or to == 'done') then
      redis.call('HINCRBY', dev, 'sent', rounds)
    end
    if state == 'failed' then
      redis.call('HINCRBY', dev, 'failed', -rounds)
    end
    if to == 'done' then
      redis.call('HINCRBY', dev, 'done', rounds)
      redis.call('ZREM', KEYS[1], cid)
    elseif to == 'failed' then
      redis.call('HINCRBY', dev, 'failed', rounds)
      redis.call('ZREM', KEYS[1], cid)
    elseif ARGV[3] ~= '' then
      redis.call('ZADD', KEYS[1], ARGV[3], cid)
    end
    out[#out + 1] = {to, 1}
  end
end
if ARGV[6] ~= '' then
  -- In chunks: unpack() of thousands of values would overflow Lua's C stack.
  local first = 9 + n + m
  while first <= #ARGV do
    local last = math.min(first + 499, #ARGV)
    redis.call('XACK', KEYS[2], ARGV[6], unpack(ARGV, first, last))
    first = last + 1
  end
end
return out
