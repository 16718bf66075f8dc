-- finish.lua: the terminal write of one run, atomically: check the fencing
-- token, write the result unless one is already terminal, acknowledge the
-- message, clean up the run's bookkeeping and wake waiters.
-- KEYS[1] task_result:{id}            STRING
-- KEYS[2] strategyq:token:{id}        STRING
-- KEYS[3] strategyq:processing:{wid}  LIST
-- KEYS[4] strategyq:done:{id}         LIST
-- KEYS[5] strategyq:attempts:{id}     STRING
-- KEYS[6] strategyq:cancel:{id}       STRING
-- KEYS[7] strategy_queue              LIST
-- ARGV[1] token   ARGV[2] result record (JSON)   ARGV[3] ttl seconds
-- ARGV[4] raw message   ARGV[5] done-list ttl seconds
-- Returns "written" | "stale" | "already" | "missing"
-- "missing": no token at all, although this run had one. Tokens have no TTL and only a
-- terminal write, a requeue or the reaper removes them (a requeue or the reaper leaves a
-- "revoked" mark), so the server dropped it (an allkeys-* eviction policy, a FLUSHDB): the
-- result is written all the same, unless one is already terminal, and the worker says so.
-- After a Sentinel failover the same happens when the run was claimed on the old primary
-- after its last replication: the new primary still has the message in the queue, and it is
-- taken out of there (from the consumer end, where it waits) so it does not run again.
local terminal = {completed = true, error = true, cancelled = true}

local held = redis.call("GET", KEYS[2])
if held and held ~= ARGV[1] then
  redis.call("LREM", KEYS[3], 1, ARGV[4])
  return "stale"
end

local current = redis.call("GET", KEYS[1])
if current then
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and terminal[rec["status"]] then
    redis.call("LREM", KEYS[3], 1, ARGV[4])
    redis.call("DEL", KEYS[2])
    return "already"
  end
end

-- The write that needs memory comes first: under OOM the script stops here with nothing
-- changed, the message still in the processing list, and the worker tries again.
redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
local acked = redis.call("LREM", KEYS[3], 1, ARGV[4])
redis.call("DEL", KEYS[2], KEYS[5], KEYS[6])
redis.call("RPUSH", KEYS[4], "done")
redis.call("EXPIRE", KEYS[4], ARGV[5])
if not held then
  if acked == 0 then
    redis.call("LREM", KEYS[7], -1, ARGV[4])
  end
  return "missing"
end
return "written"
