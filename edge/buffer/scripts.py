"""Lua for the command ledger: each state change and its telemetry land in Redis atomically."""

from __future__ import annotations

# Appends one telemetry entry to the outbox with a per-motor strictly increasing ts: ThingsBoard keeps
# one value per (key, ts), so two entries in the same millisecond would overwrite each other.
_EMIT = """
local function emit(motor_key, outbox, device, now, values)
  local last = tonumber(redis.call('HGET', motor_key, 'ts') or '0')
  local ts = tonumber(now)
  if ts <= last then ts = last + 1 end
  redis.call('HSET', motor_key, 'ts', ts)
  redis.call('XADD', outbox, '*', 'device', device, 'ts', ts, 'values', cjson.encode(values))
end
local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local function num(v) return tonumber(v or '0') end
"""

# KEYS: commands, motor, seen, outbox. ARGV: device, cid, rounds, speed ('' = default), now_ms,
# dedupe_ttl_s, max_queued_rounds. Returns {status, queued}: 0 accepted, 1 duplicate, 2 queue full.
SUBMIT = (
    _EMIT
    + """
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
"""
)

# KEYS: commands, motor, outbox. ARGV: device, now_ms.
# Returns nil (queue empty) or {cid, rounds, speed, done, pulses done}; a resumed command keeps its
# progress.
BEGIN = (
    _EMIT
    + """
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
"""
)

# KEYS: commands, motor, outbox, recent done. ARGV: device, cid, pulses done in the command (a
# checkpoint, absolute so a retried write is harmless), pulses per round, now_ms, progress_interval_ms,
# how many finished commandIds to keep for heartbeats.
# Returns nil when the command was cleared meanwhile (stop), else {rounds done, finished(0|1)}.
# Progress ('pd') is persisted at every checkpoint, a fraction of a round; the rounds it completes
# count into the counters. Their telemetry goes out at most once per interval per motor ('pts':
# when the last went out), since each message costs a rule-chain run and a webhook call upstream.
# The done always goes out at once and carries the final counts, so the progress it coalesced is not
# lost. A clock set back (pts in the future) reports at once instead of going quiet.
PROGRESS = (
    _EMIT
    + """
if redis.call('HGET', KEYS[2], 'cur') ~= ARGV[2] then return nil end
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head == 0 then return nil end
local f = fields(head[1][2])
if f.cid ~= ARGV[2] then return nil end
local rounds = tonumber(f.rounds)
local pulses = tonumber(ARGV[3])
local done = num(redis.call('HGET', KEYS[2], 'done'))
if pulses <= num(redis.call('HGET', KEYS[2], 'pd')) then return {done, 0} end
redis.call('HSET', KEYS[2], 'pd', pulses)
local delta = math.min(rounds, math.floor(pulses / tonumber(ARGV[4]))) - done
if delta <= 0 then return {done, 0} end
done = redis.call('HINCRBY', KEYS[2], 'done', delta)
local rc = redis.call('HINCRBY', KEYS[2], 'rc', delta)
local q = redis.call('HINCRBY', KEYS[2], 'q', -delta)
local values = {roundsCompleted = rc, commandId = f.cid, commandRounds = rounds, commandRoundsDone = done,
  commandDone = false, queuedRounds = q, state = 'running'}
local finished = 0
if done >= rounds then
  finished = 1
  redis.call('XDEL', KEYS[1], head[1][1])
  redis.call('HINCRBY', KEYS[2], 'cd', 1)
  values.commandDone = true
  values.receivedTs = tonumber(f.received)
  values.finishedTs = tonumber(ARGV[5])
  values.startedTs = num(redis.call('HGET', KEYS[2], 'started'))
  redis.call('HDEL', KEYS[2], 'cur', 'done', 'pd', 'started')
  redis.call('LPUSH', KEYS[4], f.cid)
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[7]) - 1)
  if redis.call('XLEN', KEYS[1]) == 0 then values.state = 'idle' end
  redis.call('HSET', KEYS[2], 'state', values.state)
end
local now = tonumber(ARGV[5])
local pts = num(redis.call('HGET', KEYS[2], 'pts'))
if finished == 1 or now - pts >= tonumber(ARGV[6]) or now < pts then
  redis.call('HSET', KEYS[2], 'pts', now)
  emit(KEYS[2], KEYS[3], ARGV[1], ARGV[5], values)
end
return {done, finished}
"""
)

# KEYS: commands, motor, outbox. ARGV: device, now_ms. Returns {cleared_rounds, cid...}.
CLEAR = (
    _EMIT
    + """
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
"""
)

# KEYS: motor, outbox, recent done. ARGV: device, now_ms, state ('' keeps the stored one).
SNAPSHOT = (
    _EMIT
    + """
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[3]) end
local state = redis.call('HGET', KEYS[1], 'state') or 'idle'
local values = {state = state, queuedRounds = num(redis.call('HGET', KEYS[1], 'q')),
  roundsCompleted = num(redis.call('HGET', KEYS[1], 'rc'))}
local recent = redis.call('LRANGE', KEYS[3], 0, -1)
-- Left out when empty: cjson encodes an empty table as an object, not a list.
if #recent > 0 then values.recentDone = recent end
emit(KEYS[1], KEYS[2], ARGV[1], ARGV[2], values)
return state
"""
)
