-- chunk_claim.lua: start one run of a sweep's chunk (as claim.lua does for a
-- task), unless its sweep has ended or been cancelled.
-- KEYS[1] task_result:{chunk}          STRING  the chunk's own record
-- KEYS[2] strategyq:attempts:{chunk}   STRING  runs started (INCR)
-- KEYS[3] strategyq:token:{chunk}      STRING  fencing token of the current run
-- KEYS[4] strategyq:fence              STRING  global fencing counter
-- KEYS[5] strategyq:cancel:{sweep}     STRING  the sweep's cancel flag
-- KEYS[6] task_result:{sweep}          STRING  the sweep's record
-- ARGV[1] ttl seconds   ARGV[2] running record (JSON)   ARGV[3] cancelled record (JSON)
-- Returns {"run", token, attempt} | {"skip", status}; when skipped, the worker
-- acknowledges the message itself (as after claim.lua).
local terminal = {completed = true, error = true, cancelled = true}
local function status_of(key)
  local current = redis.call("GET", key)
  if current then
    local ok, rec = pcall(cjson.decode, current)
    if ok and type(rec) == "table" then
      return rec["status"]
    end
  end
  return nil
end
local own = status_of(KEYS[1])
if own and terminal[own] then
  return {"skip", own}
end
local sweep = status_of(KEYS[6])
if redis.call("EXISTS", KEYS[5]) == 1 or sweep == nil or terminal[sweep] then
  redis.call("SET", KEYS[1], ARGV[3], "EX", ARGV[1])
  redis.call("DEL", KEYS[2], KEYS[3])
  return {"skip", "sweep " .. (sweep or "gone")}
end
local attempt = redis.call("INCR", KEYS[2])
redis.call("EXPIRE", KEYS[2], ARGV[1])
local token = redis.call("INCR", KEYS[4])
redis.call("SET", KEYS[3], token, "EX", ARGV[1])
redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[1])
return {"run", token, attempt}
