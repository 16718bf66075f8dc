-- sweep_fanout.lua: turn a claimed sweep into chunk tasks, atomically: check the
-- run's fencing token, store the sweep's plan, queue every chunk, mark the
-- sweep running with its progress, and acknowledge the sweep's own message
-- (from now on its chunks carry it; the last one to finish writes its result).
-- KEYS[1] task_result:{id}            STRING  the sweep's record
-- KEYS[2] strategyq:token:{id}        STRING  fencing token of this run
-- KEYS[3] strategyq:processing:{wid}  LIST    this worker's taken messages
-- KEYS[4] strategyq:sweep:{id}        HASH    plan, total_chunks, total, done
-- KEYS[5] strategyq:sweep_chunks:{id} HASH    chunk index -> its result (JSON)
-- KEYS[6] strategy_queue              LIST    (not written: chunks go straight to their lane)
-- KEYS[7] strategyq:attempts:{id}     STRING
-- KEYS[8] strategyq:sweep_digests:{id} HASH   "d:<index>" -> SHA-1 of that chunk message
-- strategyq:task:{id} (lua/_archive.lua) STRING  the message, while an archive is on
-- ARGV[1] token   ARGV[2] running record (JSON)   ARGV[3] ttl seconds   ARGV[4] raw message
-- ARGV[5] plan (JSON)   ARGV[6] total combinations   ARGV[7] chunk count
-- ARGV[8..] chunk messages
-- Returns "fanned_out" | "stale" | "already"
-- The SHA-1 of each chunk message is kept in KEYS[8] (field "d:<index>", the
-- chunks come in index order): chunk_claim.lua runs only a message whose digest is
-- there, so a message a producer pushed is never taken as one of these chunks.
-- The chunks are ordinary task messages: each is claimed by chunk_claim.lua with
-- a fencing token "<n>/<worker id>" (no TTL) like any task's. A missing token (the
-- server dropped it) does not stop the fan-out, as finish.lua writes all the same.
release(KEYS[3], ARGV[4])
local held = redis.call("GET", KEYS[2])
if held and held ~= ARGV[1] then
  return "stale"
end
local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and (rec["status"] == "completed" or rec["status"] == "error"
      or rec["status"] == "cancelled") then
    redis.call("DEL", KEYS[2])
    return "already"
  end
end
redis.call("DEL", KEYS[5], KEYS[8])
redis.call("HSET", KEYS[4], "plan", ARGV[5], "total", ARGV[6], "total_chunks", ARGV[7], "done", 0)
redis.call("EXPIRE", KEYS[4], ARGV[3])
redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
publish_record(KEYS[1], ARGV[2])
archive_task(KEYS[1], ARGV[4], ARGV[3])
-- The chunks carry the sweep's tenant and priority (protocol/chunks.py) and wait in that
-- lane, never in the list producers push onto (lua/_lanes.lua).
set_queue(KEYS[6])
local weights = lane_weights()
local clock = redis.call("TIME")
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for i = 8, #ARGV do
  redis.call("HSET", KEYS[8], "d:" .. (i - 8), redis.sha1hex(ARGV[i]))
  local ok, msg = pcall(cjson.decode, ARGV[i])
  local where = lane_of(ok and msg or nil, weights)
  local tenant, lane = where[1] or "default", where[1] and where[2] or "batch"
  enqueue(ARGV[i], tenant, lane, now_ms, false, false)
end
redis.call("EXPIRE", KEYS[8], ARGV[3])
redis.call("DEL", KEYS[2], KEYS[7])
return "fanned_out"
