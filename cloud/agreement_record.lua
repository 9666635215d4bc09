-- Records what is missing, keeps what is there, answers the whole record (one round trip, atomic).
-- KEYS[1] the agreed-settings hash; ARGV field, value, field, value, ... Returns HGETALL of it.
for i = 1, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
return redis.call('HGETALL', KEYS[1])
