-- chunk_claim.lua: start one run of a sweep's chunk (as claim.lua does for a
-- task), unless its sweep has ended or been cancelled.
-- KEYS[1] task_result:{chunk}          STRING  the chunk's own record
-- KEYS[2] strategyq:attempts:{chunk}   STRING  runs started (INCR)
-- KEYS[3] strategyq:token:{chunk}      STRING  fencing token of the current run,
--                                              "<n>/<worker id>", no TTL (as claim.lua)
-- KEYS[4] strategyq:fence              STRING  global fencing counter
-- KEYS[5] strategyq:cancel:{sweep}     STRING  the sweep's cancel flag
-- KEYS[6] task_result:{sweep}          STRING  the sweep's record
-- KEYS[7] strategyq:sweep_digests:{sweep} HASH "d:<index>": SHA-1 of each chunk message
-- The token owner's heartbeat, {prefix}heartbeat:{owner}, is derived from ARGV[5].
-- ARGV[1] ttl seconds   ARGV[2] running record (JSON)   ARGV[3] cancelled record (JSON)
-- ARGV[4] worker id   ARGV[5] key prefix   ARGV[6] the raw message   ARGV[7] its chunk index
-- Returns {"run", token, attempt} | {"skip", status} | {"duplicate", "running"} |
-- {"forged", reason}; when not run, the worker acknowledges the message itself (as
-- after claim.lua; a duplicate or a forged message goes to the dead-letter list).
-- First of all: only a message that sweep_fanout.lua queued, byte for byte, is a chunk.
-- Anything else (a producer's LPUSH naming another task's sweep) changes nothing.
local digest = redis.call("HGET", KEYS[7], "d:" .. ARGV[7])
if not digest or digest ~= redis.sha1hex(ARGV[6]) then
  return {"forged", "not a chunk its sweep queued"}
end
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
  publish_record(KEYS[1], ARGV[3])
  redis.call("DEL", KEYS[2], KEYS[3])
  return {"skip", "sweep " .. (sweep or "gone")}
end
local held = redis.call("GET", KEYS[3])
if held then
  local owner = string.match(held, "^%d+/(.*)$")
  if owner and owner ~= ARGV[4] and redis.call("EXISTS", ARGV[5] .. "heartbeat:" .. owner) == 1 then
    -- A live worker runs this chunk right now.
    return {"duplicate", "running"}
  end
end
-- The write that needs memory comes first: under OOM the script stops before changing anything.
redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[1])
local attempt = redis.call("INCR", KEYS[2])
redis.call("EXPIRE", KEYS[2], ARGV[1])
local token = redis.call("INCR", KEYS[4]) .. "/" .. ARGV[4]
redis.call("SET", KEYS[3], token)
publish_record(KEYS[1], ARGV[2])
return {"run", token, attempt}
