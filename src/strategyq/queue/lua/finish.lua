-- finish.lua: the terminal write of one run, atomically: check the fencing
-- token, write the result unless one is already terminal, acknowledge the
-- message, clean up the run's bookkeeping, index it as recent and wake waiters.
-- KEYS[1] task_result:{id}            STRING
-- KEYS[2] strategyq:token:{id}        STRING
-- KEYS[3] strategyq:processing:{wid}  LIST
-- KEYS[4] strategyq:done:{id}         LIST
-- KEYS[5] strategyq:attempts:{id}     STRING
-- KEYS[6] strategyq:cancel:{id}       STRING
-- KEYS[7] strategyq:recent            ZSET
-- KEYS[8] strategy_queue              LIST
-- strategyq:task:{id} (lua/_archive.lua) STRING  the message, while an archive is on
-- ARGV[1] token   ARGV[2] result record (JSON)   ARGV[3] ttl seconds
-- ARGV[4] raw message (the processing list holds it by value: LREM needs it)
-- ARGV[5] done-list ttl seconds   ARGV[6] task id   ARGV[7] now (epoch ms)
-- ARGV[8] recent-index cap   ARGV[9] status written   ARGV[10] task type (may be "")
-- The result's bytes count against the message's tenant (lua/_lanes.lua) while it is kept.
-- Returns "written" | "stale" | "already" | "missing"
-- "missing": no token at all, although this run had one. Tokens have no TTL; only a
-- terminal write deletes one (a requeue or the reaper leaves a "revoked" mark), so the
-- server dropped it (an allkeys-* eviction policy, a FLUSHDB) or a failover lost the claim:
-- the result is written all the same, unless one is already terminal, and the worker says
-- so. After a failover the new primary may still hold the message in the queue (the claim
-- happened after the last replication): it is taken out of there, or out of the lane it
-- was routed into, so it does not run again.
-- Under OOM the script stops at the first write that needs memory (the result's SET) with
-- nothing changed; the worker tries again.
local terminal = {completed = true, error = true, cancelled = true}

local held = redis.call("GET", KEYS[2])
if held and held ~= ARGV[1] then
  release(KEYS[3], ARGV[4])
  return "stale"
end

local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and terminal[rec["status"]] then
    release(KEYS[3], ARGV[4])
    redis.call("DEL", KEYS[2])
    return "already"
  end
end

redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
publish_record(KEYS[1], ARGV[2])
archive_task(KEYS[1], ARGV[4], ARGV[3])
account_result(ARGV[4], ARGV[6], #ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[7]))
local acked = release(KEYS[3], ARGV[4])
redis.call("DEL", KEYS[2], KEYS[5], KEYS[6])
redis.call("RPUSH", KEYS[4], "done")
redis.call("EXPIRE", KEYS[4], ARGV[5])
if not held and acked == 0 then
  if redis.call("LREM", KEYS[8], -1, ARGV[4]) == 0 then
    set_queue(KEYS[8])
    unqueue(ARGV[4])
  end
end
record_recent(KEYS[7], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[3]), tonumber(ARGV[8]),
  ARGV[9], ARGV[10])
if not held then
  return "missing"
end
return "written"
