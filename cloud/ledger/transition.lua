-- Move commands of one ledger shard to a new state, keeping the per-device counters balanced, and
-- optionally acknowledge stream entries in the same step, so the record and the ack are one.
-- KEYS[1] open commands (zset by deadline), KEYS[2] the shard's stream (same slot),
-- KEYS[3] devices with held commands (set), KEYS[4..] triples: a command hash, its device's
-- counters, its device's held commands (set).
-- ARGV[1] to-state, ARGV[2] now ms, ARGV[3] next deadline ms ('' = leave the open set),
-- ARGV[4] error text ('' = none), ARGV[5] '1' when this move is a send attempt,
-- ARGV[6] consumer group to XACK in ('' = none), ARGV[7] JSON object of more fields to record on
-- each moved command ('' = none; who cancelled, and why), ARGV[8] n = how many states it may move
-- from, ARGV[9 .. 8+n] those states, ARGV[9+n] m = 0 or one per command: the send attempt the move
-- answers (a command whose attempts differ is left as it is: the answer is for a superseded send),
-- ARGV[10+n .. 9+n+m] those attempts, ARGV[10+n+m ..] stream entry ids to XACK.
-- Returns, per command, {its state after the call ('' when the command does not exist),
-- 1 when this call moved it (0 when its state or attempt did not allow it)}.
-- Counters: accepted = done + held + cancelled + failed + outstanding (queued, sent, delivered);
-- a state named in COUNTED has a counter of its own rounds, moved with the command.
local COUNTED = {done = true, held = true, cancelled = true, failed = true}
local CLOSED = {done = true, failed = true, held = true, cancelled = true}
local to = ARGV[1]
local extra = {}
if ARGV[7] ~= '' then
  extra = cjson.decode(ARGV[7])
end
local n = tonumber(ARGV[8])
local allowed = {}
for i = 9, 8 + n do
  allowed[ARGV[i]] = true
end
local m = tonumber(ARGV[9 + n])
local out = {}
for k = 4, #KEYS, 3 do
  local cmd, dev, held = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local state = redis.call('HGET', cmd, 'state')
  local superseded = false
  local attempts = tonumber(redis.call('HGET', cmd, 'attempts') or '0')
  if state and m > 0 then
    superseded = attempts ~= tonumber(ARGV[9 + n + (k - 1) / 3])
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
      if COUNTED[state] then
        redis.call('HINCRBY', dev, state, -rounds)
      end
      if COUNTED[to] then
        redis.call('HINCRBY', dev, to, rounds)
      end
      if state == 'held' then
        redis.call('SREM', held, cid)
        if redis.call('SCARD', held) == 0 then
          redis.call('SREM', KEYS[3], redis.call('HGET', cmd, 'device'))
        end
        -- Sends before the hold do not count against the attempts a requeued command may make.
        redis.call('HSET', cmd, 'attemptsAtRequeue', attempts)
      elseif to == 'held' then
        redis.call('SADD', held, cid)
        redis.call('SADD', KEYS[3], redis.call('HGET', cmd, 'device'))
      end
    end
    if ARGV[4] ~= '' then
      redis.call('HSET', cmd, 'error', ARGV[4])
    end
    for field, value in pairs(extra) do
      redis.call('HSET', cmd, field, value)
    end
    if ARGV[5] == '1' then
      redis.call('HINCRBY', cmd, 'attempts', 1)
    end
    if state == 'queued' and attempts == 0 and (to == 'sent' or to == 'delivered' or to == 'done') then
      redis.call('HINCRBY', dev, 'sent', rounds)
    end
    if CLOSED[to] then
      redis.call('ZREM', KEYS[1], cid)
    elseif ARGV[3] ~= '' then
      redis.call('ZADD', KEYS[1], ARGV[3], cid)
    end
    out[#out + 1] = {to, 1}
  end
end
if ARGV[6] ~= '' then
  -- In chunks: unpack() of thousands of values would overflow Lua's C stack.
  local first = 10 + n + m
  while first <= #ARGV do
    local last = math.min(first + 499, #ARGV)
    redis.call('XACK', KEYS[2], ARGV[6], unpack(ARGV, first, last))
    first = last + 1
  end
end
return out
