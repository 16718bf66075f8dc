-- claim.lua: start one run of a task that this worker has just moved into its
-- processing list. The raw message is not sent: only the terminal write and the
-- requeue need it (to remove it from the processing list); when the task is not
-- run ("skip", "cancelled") the worker acknowledges the message itself.
-- KEYS[1] task_result:{id}            STRING  result record
-- KEYS[2] strategyq:attempts:{id}     STRING  runs started (INCR)
-- KEYS[3] strategyq:token:{id}        STRING  fencing token of the current run
-- KEYS[4] strategyq:fence             STRING  global fencing counter
-- KEYS[5] strategyq:cancel:{id}       STRING  cancel request flag
-- KEYS[6] strategyq:done:{id}         LIST    completion notification
-- KEYS[7] strategyq:recent            ZSET    recent-task index
-- ARGV[1] ttl seconds   ARGV[2] running record (JSON)   ARGV[3] cancelled record (JSON)
-- ARGV[4] done-list ttl seconds   ARGV[5] task id   ARGV[6] now (epoch ms)
-- ARGV[7] recent-index cap
-- Returns {"run", token, attempt} | {"skip", status} | {"cancelled", 0}
local terminal = {completed = true, error = true, cancelled = true}

local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and terminal[rec["status"]] then
    -- A re-delivered task that already finished is not run again.
    redis.call("DEL", KEYS[5])
    return {"skip", rec["status"]}
  end
end

if redis.call("EXISTS", KEYS[5]) == 1 then
  redis.call("SET", KEYS[1], ARGV[3], "EX", ARGV[1])
  redis.call("DEL", KEYS[2], KEYS[3])
  redis.call("RPUSH", KEYS[6], "cancelled")
  redis.call("EXPIRE", KEYS[6], ARGV[4])
  record_recent(KEYS[7], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[1]), tonumber(ARGV[7]))
  return {"cancelled", 0}
end

local attempt = redis.call("INCR", KEYS[2])
redis.call("EXPIRE", KEYS[2], ARGV[1])
local token = redis.call("INCR", KEYS[4])
redis.call("SET", KEYS[3], token, "EX", ARGV[1])
redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[1])
return {"run", token, attempt}
