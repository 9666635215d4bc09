-- Merge one telemetry update into a device's live state (what late joiners get), in ts order.
-- KEYS[1] hash device -> state JSON. ARGV: device, update JSON, telemetry ts ms, ttl s,
-- optionally a commandId the stored state must be showing (else nothing is merged) or '', and the
-- latest ts the server accepts now: a stored ts beyond it (kept before ts were bounded) is stale.
-- Returns {1, state} when applied, {0, state} when older than what is stored or a repeat of the
-- update stored at the same ts (left as is: a message delivered twice changes nothing).
local prev = redis.call('HGET', KEYS[1], ARGV[1])
local update = cjson.decode(ARGV[2])
local state = {}
if prev then state = cjson.decode(prev) end
local ts = tonumber(ARGV[3])
if state.ts and state.ts > tonumber(ARGV[6]) then state.ts = nil end
if state.ts and state.ts > ts then
  return {0, prev}
end
if ARGV[5] and ARGV[5] ~= '' and state.commandId ~= ARGV[5] then
  return {0, prev or '{}'}
end
-- A command queued while another runs (no state in the update) changes only the queue length:
-- the bar keeps following the command that is turning.
if update.state == nil and update.commandId and state.state == 'running'
    and state.commandId and update.commandId ~= state.commandId then
  update = {queuedRounds = update.queuedRounds, roundsCompleted = update.roundsCompleted}
end
-- Seconds per round, smoothed, for the ETA.
if state.roundsCompleted and update.roundsCompleted and state.ts
    and update.roundsCompleted > state.roundsCompleted and ts > state.ts then
  local spr = (ts - state.ts) / 1000 / (update.roundsCompleted - state.roundsCompleted)
  if state.secondsPerRound then spr = 0.5 * state.secondsPerRound + 0.5 * spr end
  state.secondsPerRound = spr
end
if state.ts == ts then
  local changes = false
  for key, value in pairs(update) do
    if state[key] ~= value then changes = true end
  end
  if not changes then return {0, prev} end
end
for key, value in pairs(update) do state[key] = value end
state.ts = ts
local encoded = cjson.encode(state)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, encoded}
