-- The last checkpoint of a command whose pulses all turned and, unless the motor is held or parking,
-- the start of the next: one script, so a motor goes from one command to the next in one round trip.
-- KEYS: checkpoint's (command.lua). ARGV: checkpoint's, then whether to begin the next (1|0).
-- Returns {checkpoint's reply, begin's reply}, false where a reply is nil.
local result = checkpoint(KEYS, ARGV)
local nxt = false
if ARGV[8] == '1' then nxt = begin(KEYS, {ARGV[1], ARGV[5]}) or false end
return {result or false, nxt}
