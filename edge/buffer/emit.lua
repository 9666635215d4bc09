-- The prelude of every command-ledger script (scripts.py puts it before each): helpers only.
-- Appends one telemetry entry to the outbox with a per-motor strictly increasing ts: ThingsBoard keeps
-- one value per (key, ts), so two entries in the same millisecond would overwrite each other.
-- Returns the entry's ts and its encoded values (a command's done keeps them, to send them again).
-- One outbox entry as edge/buffer/outbox.py reads it (values already JSON).
local function append(outbox, device, ts, encoded)
  redis.call('XADD', outbox, '*', 'device', device, 'ts', ts, 'values', encoded)
end
local function emit(motor_key, outbox, device, now, values)
  local last = tonumber(redis.call('HGET', motor_key, 'ts') or '0')
  local ts = tonumber(now)
  if ts <= last then ts = last + 1 end
  redis.call('HSET', motor_key, 'ts', ts)
  local encoded = cjson.encode(values)
  append(outbox, device, ts, encoded)
  return ts, encoded
end
local function fields(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local function num(v) return tonumber(v or '0') end
