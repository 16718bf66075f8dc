-- claim.lua: start one run of a task that this worker has just moved into its
-- processing list.
-- KEYS[1] task_result:{id}            STRING  result record
-- KEYS[2] strategyq:attempts:{id}     STRING  runs started (INCR)
-- KEYS[3] strategyq:token:{id}        STRING  fencing token of the current run
-- KEYS[4] strategyq:fence             STRING  global fencing counter
-- KEYS[5] strategyq:processing:{wid}  LIST    this worker's taken messages
-- KEYS[6] strategyq:cancel:{id}       STRING  cancel request flag
-- KEYS[7] strategyq:done:{id}         LIST    completion notification
-- ARGV[1] raw message   ARGV[2] ttl seconds   ARGV[3] running record (JSON)
-- ARGV[4] cancelled record (JSON)   ARGV[5] done-list ttl seconds
-- Returns {"run", token, attempt} | {"skip", status} | {"cancelled", 0}
local terminal = {completed = true, error = true, cancelled = true}

local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and terminal[rec["status"]] then
    -- A re-delivered task that already finished is not run again.
    redis.call("LREM", KEYS[5], 1, ARGV[1])
    redis.call("DEL", KEYS[6])
    return {"skip", rec["status"]}
  end
end

if redis.call("EXISTS", KEYS[6]) == 1 then
  redis.call("SET", KEYS[1], ARGV[4], "EX", ARGV[2])
  redis.call("LREM", KEYS[5], 1, ARGV[1])
  redis.call("DEL", KEYS[2], KEYS[3])
  redis.call("RPUSH", KEYS[7], "cancelled")
  redis.call("EXPIRE", KEYS[7], ARGV[5])
  return {"cancelled", 0}
end

local attempt = redis.call("INCR", KEYS[2])
redis.call("EXPIRE", KEYS[2], ARGV[2])
local token = redis.call("INCR", KEYS[4])
redis.call("SET", KEYS[3], token, "EX", ARGV[2])
redis.call("SET", KEYS[1], ARGV[3], "EX", ARGV[2])
return {"run", token, attempt}
