-- A re-ask of a command (RotateParams.reask): where it stands, from its seen marker, without ever
-- queueing it. KEYS: the command's seen marker, motor, outbox. ARGV: device.
-- Returns {outcome, queued rounds}: outcome 'unknown' (no marker: this Redis never had the command,
-- or lost it), 'pending' (queued or turning: '1', as submit.lua wrote it), 'cleared' (a stop dropped
-- it, clear.lua), or 'done' (finished, command.lua's checkpoint): then its done entry goes into the
-- outbox again with its original ts and values, so the done travels the normal path once more (the
-- same values at the same ts overwrite themselves in ThingsBoard; the cloud counts a done once).
local marker = redis.call('GET', KEYS[1])
local q = num(redis.call('HGET', KEYS[2], 'q'))
if not marker then return {'unknown', q} end
if marker == 'cleared' then return {'cleared', q} end
local ts, encoded = string.match(marker, '^done:(%d+):(.*)$')
if not ts then return {'pending', q} end
append(KEYS[3], ARGV[1], ts, encoded)
return {'done', q}
