-- finish.lua: the terminal write of one run, atomically: check the fencing
-- token, write the result unless one is already terminal, acknowledge the
-- message, clean up the run's bookkeeping, index it as recent and wake waiters.
-- KEYS[1] task_result:{id}            STRING
-- KEYS[2] strategyq:token:{id}        STRING
-- KEYS[3] strategyq:processing:{wid}  LIST
-- KEYS[4] strategyq:done:{id}         LIST
-- KEYS[5] strategyq:attempts:{id}     STRING
-- KEYS[6] strategyq:cancel:{id}       STRING
-- KEYS[7] strategyq:recent            ZSET
-- ARGV[1] token   ARGV[2] result record (JSON)   ARGV[3] ttl seconds
-- ARGV[4] raw message (the processing list holds it by value: LREM needs it)
-- ARGV[5] done-list ttl seconds   ARGV[6] task id   ARGV[7] now (epoch ms)
-- ARGV[8] recent-index cap
-- Returns "written" | "stale" | "already"
local terminal = {completed = true, error = true, cancelled = true}

-- Our own copy of the message leaves our processing list whatever happens.
redis.call("LREM", KEYS[3], 1, ARGV[4])

if redis.call("GET", KEYS[2]) ~= ARGV[1] then
  return "stale"
end

local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and terminal[rec["status"]] then
    redis.call("DEL", KEYS[2])
    return "already"
  end
end

redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
redis.call("DEL", KEYS[2], KEYS[5], KEYS[6])
redis.call("RPUSH", KEYS[4], "done")
redis.call("EXPIRE", KEYS[4], ARGV[5])
record_recent(KEYS[7], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[3]), tonumber(ARGV[8]))
return "written"
