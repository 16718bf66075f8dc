-- chunk_done.lua: count one finished chunk into its sweep, exactly once.
-- A chunk's result is stored under its index with HSETNX, so a late duplicate
-- run never counts twice. When every chunk is in, the caller assembles the
-- sweep's result and writes it with sweep_finish.lua; until then the chunk
-- keeps its token and stays in the processing list, so a worker that dies
-- while assembling leaves the chunk to be re-run, and the re-run assembles.
-- KEYS[1] task_result:{chunk}          STRING
-- KEYS[2] strategyq:token:{chunk}      STRING
-- KEYS[3] strategyq:processing:{wid}   LIST
-- KEYS[4] strategyq:attempts:{chunk}   STRING
-- KEYS[5] strategyq:sweep:{sweep}      HASH
-- KEYS[6] strategyq:sweep_chunks:{sweep} HASH
-- KEYS[7] task_result:{sweep}          STRING
-- ARGV[1] token   ARGV[2] chunk's completed record   ARGV[3] ttl seconds   ARGV[4] raw message
-- ARGV[5] chunk index   ARGV[6] chunk result (JSON)   ARGV[7] combinations in the chunk
-- ARGV[8] now (ISO)
-- Returns "assemble" | "counted" | "stale" | "over"
-- A missing token (the server dropped it; tokens have no TTL) counts all the same,
-- as finish.lua writes, unless the chunk's record is terminal (a run of it was acknowledged).
local function own_terminal()
  local ok, rec = pcall(cjson.decode, redis.call("GET", KEYS[1]) or "null")
  return ok and type(rec) == "table" and (rec["status"] == "completed" or rec["status"] == "error"
    or rec["status"] == "cancelled")
end
local held = redis.call("GET", KEYS[2])
if held ~= ARGV[1] and (held or own_terminal()) then
  release(KEYS[3], ARGV[4])
  return "stale"
end
local function ack()
  redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
  publish_record(KEYS[1], ARGV[2])
  release(KEYS[3], ARGV[4])
  redis.call("DEL", KEYS[2], KEYS[4])
end
local current = redis.call("GET", KEYS[7])
local rec = nil
if current then
  local ok, value = pcall(cjson.decode, current)
  if ok and type(value) == "table" then rec = value end
end
if rec == nil or rec["status"] ~= "running" or redis.call("EXISTS", KEYS[5]) == 0 then
  ack()
  return "over"
end
if redis.call("HSETNX", KEYS[6], ARGV[5], ARGV[6]) == 1 then
  redis.call("EXPIRE", KEYS[6], ARGV[3])
  local done = redis.call("HINCRBY", KEYS[5], "done", tonumber(ARGV[7]))
  if type(rec["data"]) == "table" then
    rec["data"]["progress"] = {done = done, total = tonumber(redis.call("HGET", KEYS[5], "total"))}
    rec["data"]["stage"] = "running_chunks"
    rec["updated_at"] = ARGV[8]
    local progress = cjson.encode(rec)
    redis.call("SET", KEYS[7], progress, "KEEPTTL")
    publish_record(KEYS[7], progress)
  end
end
if redis.call("HLEN", KEYS[6]) >= tonumber(redis.call("HGET", KEYS[5], "total_chunks")) then
  return "assemble"
end
ack()
return "counted"
