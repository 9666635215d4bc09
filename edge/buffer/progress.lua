-- KEYS and ARGV: checkpoint's (command.lua).
return checkpoint(KEYS, ARGV)
