-- sweep_finish.lua: the terminal write of a sweep, by the run of the chunk that
-- completed it (or of a chunk whose error fails it): write the sweep's
-- result unless it already has a terminal one, wake its waiters, acknowledge
-- the chunk, and drop the sweep's bookkeeping. A failure also raises the
-- sweep's cancel flag, so its other chunks stop.
-- KEYS[1] task_result:{sweep}          STRING
-- KEYS[2] strategyq:done:{sweep}       LIST
-- KEYS[3] strategyq:sweep:{sweep}      HASH
-- KEYS[4] strategyq:sweep_chunks:{sweep} HASH
-- KEYS[5] task_result:{chunk}          STRING
-- KEYS[6] strategyq:token:{chunk}      STRING
-- KEYS[7] strategyq:processing:{wid}   LIST
-- KEYS[8] strategyq:attempts:{chunk}   STRING
-- KEYS[9] strategyq:cancel:{sweep}     STRING
-- KEYS[10] strategyq:recent            ZSET    recent-task index
-- ARGV[1] chunk token   ARGV[2] sweep's result record   ARGV[3] ttl seconds   ARGV[4] raw
-- ARGV[5] done-list ttl seconds   ARGV[6] chunk's record   ARGV[7] "fail" | "complete"
-- ARGV[8] sweep's task id   ARGV[9] now (epoch ms)   ARGV[10] recent-index cap
-- Returns "written" | "already" | "stale"
-- The sweep is filed in the recent index's views under its record's status and
-- the type "sweep". A missing chunk token writes all the same (as finish.lua), unless
-- the chunk's record is terminal (a run of it was acknowledged).
release(KEYS[7], ARGV[4])
local function own_terminal()
  local ok, rec = pcall(cjson.decode, redis.call("GET", KEYS[5]) or "null")
  return ok and type(rec) == "table" and (rec["status"] == "completed" or rec["status"] == "error"
    or rec["status"] == "cancelled")
end
local held = redis.call("GET", KEYS[6])
if held ~= ARGV[1] and (held or own_terminal()) then
  return "stale"
end
redis.call("SET", KEYS[5], ARGV[6], "EX", ARGV[3])
publish_record(KEYS[5], ARGV[6])
redis.call("DEL", KEYS[6], KEYS[8])
local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and rec["status"] ~= "running" and rec["status"] ~= "queued" then
    return "already"
  end
end
redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
publish_record(KEYS[1], ARGV[2])
-- The sweep's result counts against its tenant, which its chunks carry (lua/_lanes.lua).
account_result(ARGV[4], ARGV[8], #ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[9]))
redis.call("DEL", KEYS[3], KEYS[4])
if ARGV[7] == "fail" then
  redis.call("SET", KEYS[9], "1", "EX", ARGV[3])
else
  redis.call("DEL", KEYS[9])
end
redis.call("RPUSH", KEYS[2], "done")
redis.call("EXPIRE", KEYS[2], ARGV[5])
local status = nil
local sok, written = pcall(cjson.decode, ARGV[2])
if sok and type(written) == "table" and type(written["status"]) == "string" then
  status = written["status"]
end
record_recent(KEYS[10], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[3]), tonumber(ARGV[10]),
  status, "sweep")
return "written"
