-- claim.lua: start one run of a task that this worker has just moved into its
-- processing list.
-- KEYS[1] task_result:{id}            STRING  result record
-- KEYS[2] strategyq:attempts:{id}     STRING  runs started (INCR)
-- KEYS[3] strategyq:token:{id}        STRING  fencing token of the current run, "<n>/<worker id>"
-- KEYS[4] strategyq:fence             STRING  global fencing counter
-- KEYS[5] strategyq:processing:{wid}  LIST    this worker's taken messages
-- KEYS[6] strategyq:cancel:{id}       STRING  cancel request flag
-- KEYS[7] strategyq:done:{id}         LIST    completion notification
-- KEYS[8] strategyq:dead_letter       LIST    where a duplicate message goes
-- The token's owner's heartbeat, {prefix}heartbeat:{owner}, is derived from ARGV[7].
-- ARGV[1] raw message   ARGV[2] ttl seconds   ARGV[3] running record (JSON)
-- ARGV[4] cancelled record (JSON)   ARGV[5] done-list ttl seconds   ARGV[6] worker id
-- ARGV[7] key prefix   ARGV[8] task id   ARGV[9] now (ISO)
-- Returns {"run", token, attempt} | {"skip", status} | {"cancelled", 0}
--       | {"duplicate", status}
-- The token has no TTL, so a server that evicts keys with an expiry (volatile-*) can never
-- take it; finish.lua and reap.lua delete it.
local terminal = {completed = true, error = true, cancelled = true}

local function duplicate(status)
  -- Another message with this task id is running or has finished: this one is not run, and
  -- the existing record stays as it is.
  redis.call("LREM", KEYS[5], 1, ARGV[1])
  local err = "task id '" .. ARGV[8] .. "' is already in use by another task (" .. status
    .. "); this message was not run. Give every task its own id (a new UUID), and read the "
    .. "first task's result at task_result:" .. ARGV[8]
  redis.call("LPUSH", KEYS[8], cjson.encode({raw = ARGV[1], reason = "duplicate", error = err,
    task_id = ARGV[8], status = status, worker_id = ARGV[6], at = ARGV[9]}))
  return {"duplicate", status}
end

local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and terminal[rec["status"]] then
    if rec["status"] == "cancelled" and redis.call("EXISTS", KEYS[6]) == 1 then
      -- Cancelled while it waited in the queue: skip it, once.
      redis.call("LREM", KEYS[5], 1, ARGV[1])
      redis.call("DEL", KEYS[6])
      return {"skip", rec["status"]}
    end
    return duplicate(rec["status"])
  end
end

local held = redis.call("GET", KEYS[3])
if held then
  local owner = string.match(held, "^%d+/(.*)$")
  if owner and owner ~= ARGV[6] and redis.call("EXISTS", ARGV[7] .. "heartbeat:" .. owner) == 1 then
    return duplicate("running")
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

-- The writes that need memory come first: under OOM the script stops before changing anything.
redis.call("SET", KEYS[1], ARGV[3], "EX", ARGV[2])
local attempt = redis.call("INCR", KEYS[2])
redis.call("EXPIRE", KEYS[2], ARGV[2])
local token = redis.call("INCR", KEYS[4]) .. "/" .. ARGV[6]
redis.call("SET", KEYS[3], token)
return {"run", token, attempt}
