-- cancel.lua: ask for a task to be cancelled. A task still queued ends
-- "cancelled" at once (a worker that later takes it skips it); a running one
-- is killed by its worker, which watches the flag; a sweep split into chunks
-- ends "cancelled" at once and its chunks stop.
-- KEYS[1] task_result:{id}        STRING
-- KEYS[2] strategyq:cancel:{id}   STRING
-- KEYS[3] strategyq:done:{id}     LIST
-- KEYS[4] strategyq:recent         ZSET    recent-task index
-- ARGV[1] ttl seconds   ARGV[2] cancelled record (JSON)   ARGV[3] done-list ttl seconds
-- ARGV[4] task id   ARGV[5] now (epoch ms)   ARGV[6] recent-index cap
-- Returns the status the task had ("unknown" when there is no record).
local current = redis.call("GET", KEYS[1])
local status = "unknown"
local fanned_out = false
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and type(rec["status"]) == "string" then
    status = rec["status"]
    -- A sweep whose chunks are queued has no run of its own to stop: it ends now,
    -- and its chunks see the flag (queued ones are skipped, running ones killed).
    fanned_out = type(rec["data"]) == "table" and rec["data"]["fanned_out"] == true
  end
end
if status == "completed" or status == "error" or status == "cancelled" then
  return status
end
redis.call("SET", KEYS[2], "1", "EX", ARGV[1])
if status == "queued" or fanned_out then
  redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[1])
  publish_record(KEYS[1], ARGV[2])
  redis.call("RPUSH", KEYS[3], "cancelled")
  redis.call("EXPIRE", KEYS[3], ARGV[3])
  record_recent(KEYS[4], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[1]), tonumber(ARGV[6]),
    "cancelled", fanned_out and "sweep" or nil)
end
return status
