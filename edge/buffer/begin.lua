-- KEYS and ARGV: begin's (command.lua).
return begin(KEYS, ARGV)
