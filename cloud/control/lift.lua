-- Lift a hold in one step, so a hold placed meanwhile by another worker is never lost.
-- KEYS[1] the holds hash (device or '*' -> who held it).
-- ARGV[1] the device to lift, or '*' for every hold; ARGV[2] JSON list of the known devices (a
-- device lifted out of a hold of all leaves each other known device held by the same record);
-- ARGV[3] JSON list of devices that stay held whatever is lifted (their own record, or the one of all).
local everything = redis.call('HGET', KEYS[1], '*')
local stays = {}
for _, device in ipairs(cjson.decode(ARGV[3])) do
  local record = redis.call('HGET', KEYS[1], device) or everything
  if record then
    stays[device] = record
  end
end
if ARGV[1] == '*' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  if everything then
    redis.call('HDEL', KEYS[1], '*')
    for _, device in ipairs(cjson.decode(ARGV[2])) do
      if device ~= ARGV[1] then
        redis.call('HSETNX', KEYS[1], device, everything)
      end
    end
  end
end
for device, record in pairs(stays) do
  redis.call('HSET', KEYS[1], device, record)
end
return redis.call('HLEN', KEYS[1])
