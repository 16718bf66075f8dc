-- claim.lua: start one run of a task that this worker has just moved into its
-- processing list. The raw message is not sent: only the terminal write and the
-- requeue need it (to remove it from the processing list); when the task is not
-- run ("skip", "cancelled", "duplicate") the worker acknowledges the message itself
-- (a duplicate goes to the dead-letter list).
-- KEYS[1] task_result:{id}            STRING  result record
-- KEYS[2] strategyq:attempts:{id}     STRING  runs started (INCR)
-- KEYS[3] strategyq:token:{id}        STRING  fencing token of the current run,
--                                             "<n>/<worker id>", no TTL
-- KEYS[4] strategyq:fence             STRING  global fencing counter
-- KEYS[5] strategyq:cancel:{id}       STRING  cancel request flag
-- KEYS[6] strategyq:done:{id}         LIST    completion notification
-- KEYS[7] strategyq:recent            ZSET    recent-task index
-- The token owner's heartbeat, {prefix}heartbeat:{owner}, is derived from ARGV[10].
-- ARGV[1] ttl seconds   ARGV[2] running record (JSON)   ARGV[3] cancelled record (JSON)
-- ARGV[4] done-list ttl seconds   ARGV[5] task id   ARGV[6] now (epoch ms)
-- ARGV[7] recent-index cap   ARGV[8] task type (may be "")
-- ARGV[9] worker id   ARGV[10] key prefix
-- Returns {"run", token, attempt, submitted_at} | {"skip", status} | {"cancelled", 0}
--       | {"duplicate", status}
-- submitted_at ("" when unknown) is when the task was first queued, as the record it
-- replaces says (a queued record's submitted_at or queued_at, or a lost run's running
-- record's submitted_at); it is written into the running record too, so the wait in the
-- queue stays known through requeues and retries.
-- The token has no TTL, so a server that evicts keys with an expiry (volatile-*) never
-- takes it; finish.lua deletes it, requeue.lua and reap.lua revoke it.
local terminal = {completed = true, error = true, cancelled = true}

local submitted = ""
local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and type(rec["data"]) == "table" then
    local at = rec["data"]["submitted_at"]
    if type(at) ~= "string" then
      at = rec["data"]["queued_at"]
    end
    if type(at) == "string" and string.len(at) <= 64 then
      submitted = at
    end
  end
  if ok and type(rec) == "table" and terminal[rec["status"]] then
    if rec["status"] == "cancelled" and redis.call("EXISTS", KEYS[5]) == 1 then
      -- Cancelled while it waited in the queue: skip it, once.
      redis.call("DEL", KEYS[5])
      return {"skip", rec["status"]}
    end
    -- Finished before this message arrived: another task used the same id.
    return {"duplicate", rec["status"]}
  end
end

local held = redis.call("GET", KEYS[3])
if held then
  local owner = string.match(held, "^%d+/(.*)$")
  if owner and owner ~= ARGV[9] and redis.call("EXISTS", ARGV[10] .. "heartbeat:" .. owner) == 1 then
    -- A live worker runs a task with this id right now.
    return {"duplicate", "running"}
  end
end

if redis.call("EXISTS", KEYS[5]) == 1 then
  redis.call("SET", KEYS[1], ARGV[3], "EX", ARGV[1])
  publish_record(KEYS[1], ARGV[3])
  redis.call("DEL", KEYS[2], KEYS[3])
  redis.call("RPUSH", KEYS[6], "cancelled")
  redis.call("EXPIRE", KEYS[6], ARGV[4])
  record_recent(KEYS[7], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[1]), tonumber(ARGV[7]),
    "cancelled", ARGV[8])
  return {"cancelled", 0}
end

local running = ARGV[2]
if submitted ~= "" then
  -- The running record is {"status":"running","data":{...},...}: the time goes first in data.
  local at = string.find(running, '"data":{', 1, true)
  if at then
    running = string.sub(running, 1, at + 7) .. '"submitted_at":' .. cjson.encode(submitted)
      .. "," .. string.sub(running, at + 8)
  end
end
-- The write that needs memory comes first: under OOM the script stops before changing anything.
redis.call("SET", KEYS[1], running, "EX", ARGV[1])
local attempt = redis.call("INCR", KEYS[2])
redis.call("EXPIRE", KEYS[2], ARGV[1])
local token = redis.call("INCR", KEYS[4]) .. "/" .. ARGV[9]
redis.call("SET", KEYS[3], token)
publish_record(KEYS[1], running)
return {"run", token, attempt, submitted}
