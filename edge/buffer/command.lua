-- The two steps of running a command, as functions, so that one script can finish a command and begin
-- the next (finish.lua) as well as do either alone (progress.lua, begin.lua). Included after emit.lua.

-- checkpoint. k: commands, motor, outbox, recent done, the command's seen marker. a: device, cid, pulses
-- done in the command (a
-- checkpoint, absolute so a retried write is harmless), pulses per round, now_ms, progress_interval_ms,
-- how many finished commandIds to keep for heartbeats.
-- Returns nil when the command was cleared meanwhile (stop), else {rounds done, finished(0|1)}.
-- Progress ('pd') is persisted at every checkpoint, a fraction of a round; the rounds it completes
-- count into the counters. Their telemetry goes out at most once per interval per motor ('pts':
-- when the last went out), since each message costs a rule-chain run and a webhook call upstream.
-- The done always goes out at once and carries the final counts, so the progress it coalesced is not
-- lost. A clock set back (pts in the future) reports at once instead of going quiet.
-- The finish writes the done entry (its ts and values) into the command's seen marker, keeping the
-- marker's TTL, so a re-ask (recall.lua) can put the very same entry in the outbox again.
local function checkpoint(k, a)
  if redis.call('HGET', k[2], 'cur') ~= a[2] then return nil end
  local head = redis.call('XRANGE', k[1], '-', '+', 'COUNT', 1)
  if #head == 0 then return nil end
  local f = fields(head[1][2])
  if f.cid ~= a[2] then return nil end
  local rounds = tonumber(f.rounds)
  local pulses = tonumber(a[3])
  local done = num(redis.call('HGET', k[2], 'done'))
  if pulses <= num(redis.call('HGET', k[2], 'pd')) then return {done, 0} end
  redis.call('HSET', k[2], 'pd', pulses)
  local delta = math.min(rounds, math.floor(pulses / tonumber(a[4]))) - done
  if delta <= 0 then return {done, 0} end
  done = redis.call('HINCRBY', k[2], 'done', delta)
  local rc = redis.call('HINCRBY', k[2], 'rc', delta)
  local q = redis.call('HINCRBY', k[2], 'q', -delta)
  local values = {roundsCompleted = rc, commandId = f.cid, commandRounds = rounds, commandRoundsDone = done,
    commandDone = false, queuedRounds = q, state = 'running'}
  local finished = 0
  if done >= rounds then
    finished = 1
    redis.call('XDEL', k[1], head[1][1])
    redis.call('HINCRBY', k[2], 'cd', 1)
    values.commandDone = true
    values.receivedTs = tonumber(f.received)
    values.finishedTs = tonumber(a[5])
    values.startedTs = num(redis.call('HGET', k[2], 'started'))
    redis.call('HDEL', k[2], 'cur', 'done', 'pd', 'started')
    redis.call('LPUSH', k[4], f.cid)
    redis.call('LTRIM', k[4], 0, tonumber(a[7]) - 1)
    if redis.call('XLEN', k[1]) == 0 then values.state = 'idle' end
    redis.call('HSET', k[2], 'state', values.state)
  end
  local now = tonumber(a[5])
  local pts = num(redis.call('HGET', k[2], 'pts'))
  if finished == 1 or now - pts >= tonumber(a[6]) or now < pts then
    redis.call('HSET', k[2], 'pts', now)
    local ts, encoded = emit(k[2], k[3], a[1], a[5], values)
    if finished == 1 then
      redis.call('SET', k[5], 'done:' .. ts .. ':' .. encoded, 'XX', 'KEEPTTL')
    end
  end
  return {done, finished}
end

-- begin. k: commands, motor, outbox. a: device, now_ms.
-- Returns nil (queue empty) or {cid, rounds, speed, done, pulses done}; a resumed command keeps its
-- progress.
local function begin(k, a)
  local head = redis.call('XRANGE', k[1], '-', '+', 'COUNT', 1)
  if #head == 0 then return nil end
  local f = fields(head[1][2])
  local rounds = tonumber(f.rounds)
  if redis.call('HGET', k[2], 'cur') ~= f.cid then
    redis.call('HSET', k[2], 'cur', f.cid, 'done', 0, 'pd', 0, 'started', a[2])
  end
  -- The start is a progress report too: the first round's report waits out the interval from here.
  redis.call('HSET', k[2], 'state', 'running', 'pts', a[2])
  local done = num(redis.call('HGET', k[2], 'done'))
  emit(k[2], k[3], a[1], a[2], {state = 'running', commandId = f.cid, commandRounds = rounds,
    commandRoundsDone = done, commandDone = false, queuedRounds = num(redis.call('HGET', k[2], 'q')),
    receivedTs = tonumber(f.received), startedTs = num(redis.call('HGET', k[2], 'started'))})
  return {f.cid, f.rounds, f.speed, done, num(redis.call('HGET', k[2], 'pd'))}
end
