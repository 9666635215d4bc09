-- Dedupe and append, atomically, for events that all hash to one stream shard.
-- KEYS[1]    the shard stream
-- KEYS[2..n] one dedupe key per event (same cluster slot as the stream: see contracts.streams)
-- ARGV[1]    dedupe TTL in seconds
-- ARGV[2]    the stream entry's field for the event (contracts.EVENT_FIELD)
-- ARGV[3]    the mark a replayed event's reply starts with (contracts.DEDUPE_MARK)
-- ARGV[4..]  the events, JSON-encoded, in the same order as their dedupe keys
-- Returns, per event, the new entry id, or the mark .. the entry id of the first delivery.
local out = {}
for i = 2, #KEYS do
  local seen = redis.call('GET', KEYS[i])
  if seen then
    out[#out + 1] = ARGV[3] .. seen
  else
    local id = redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[i + 2])
    redis.call('SET', KEYS[i], id, 'EX', ARGV[1])
    out[#out + 1] = id
  end
end
return out
