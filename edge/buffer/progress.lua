-- KEYS: commands, motor, outbox, recent done. ARGV: device, cid, pulses done in the command (a
-- checkpoint, absolute so a retried write is harmless), pulses per round, now_ms, progress_interval_ms,
-- how many finished commandIds to keep for heartbeats.
-- Returns nil when the command was cleared meanwhile (stop), else {rounds done, finished(0|1)}.
-- Progress ('pd') is persisted at every checkpoint, a fraction of a round; the rounds it completes
-- count into the counters. Their telemetry goes out at most once per interval per motor ('pts':
-- when the last went out), since each message costs a rule-chain run and a webhook call upstream.
-- The done always goes out at once and carries the final counts, so the progress it coalesced is not
-- lost. A clock set back (pts in the future) reports at once instead of going quiet.
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
