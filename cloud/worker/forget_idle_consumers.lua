-- Each worker process reads under its own consumer name, so every restart leaves a name behind in
-- the group. This drops names that hold nothing and have been idle a while; being one script, it
-- can never drop a consumer between its reading an entry and our look at its pending count.
-- KEYS[1] the stream; ARGV[1] the group, ARGV[2] the caller's own consumer name (kept),
-- ARGV[3] the least idle time in ms. Returns how many names were dropped.
local removed = 0
for _, fields in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #fields, 2 do
    info[fields[i]] = fields[i + 1]
  end
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
