-- push.lua: what the Python producer does for one task, in one command: write
-- the "queued" record, then LPUSH the message (producers that speak plain
-- Redis, like a Go backend, LPUSH only; both are served the same way).
-- A task id names one task while its record is kept: an id that has a record
-- (queued, running, or finished within the result TTL) is refused.
-- KEYS[1] task_result:{id}   STRING  result record
-- KEYS[2] strategy_queue     LIST
-- ARGV[1] queued record (JSON)   ARGV[2] ttl seconds   ARGV[3] task message
-- Returns the queue's length, or {"in_use", status} when the id is taken.
local current = redis.call("GET", KEYS[1])
if current then
  local status = "unknown"
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and type(rec["status"]) == "string" then
    status = rec["status"]
  end
  return {"in_use", status}
end
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
publish_record(KEYS[1], ARGV[1])
return redis.call("LPUSH", KEYS[2], ARGV[3])
