-- ack.lua: drop a message this worker will not run from its processing list (and from
-- its tenant's in-flight count, lua/_lanes.lua), keeping it in the dead-letter list
-- when an entry is given.
-- KEYS[1] strategyq:processing:{wid}  LIST
-- KEYS[2] strategyq:dead_letter       LIST
-- ARGV[1] raw message   ARGV[2] dead-letter entry (JSON; "" for none)
-- Returns how many copies were removed (0 or 1).
if ARGV[2] ~= "" then
  redis.call("LPUSH", KEYS[2], ARGV[2])
end
return release(KEYS[1], ARGV[1])
