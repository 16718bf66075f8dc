-- requeue.lua: hand a task this worker could not finish (shutdown past the
-- grace period, or a message found in its processing list that it is not
-- running) back to the queue's consumer end, so it runs next. The run's token
-- is revoked so a late write from it is stale.
-- KEYS[1] strategyq:processing:{wid}  LIST
-- KEYS[2] strategy_queue              LIST
-- KEYS[3] strategyq:token:{id}        STRING
-- KEYS[4] strategyq:attempts:{id}     STRING
-- KEYS[5] task_result:{id}            STRING
-- ARGV[1] raw message   ARGV[2] token ("" for a message whose run is unknown)
-- ARGV[3] queued record (JSON)   ARGV[4] ttl seconds   ARGV[5] worker id
-- With a token, the run does not count against max_attempts (it was stopped, not lost);
-- without one, a token this worker holds for the task is revoked and the run counts.
-- Returns 1 when requeued, 0 when the message was no longer ours.
if release(KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call("RPUSH", KEYS[2], ARGV[1])
-- Counted as queued now, and routed to the front of its tenant's list (lua/_lanes.lua).
redis.call("HSET", LP .. "admitted", string.sub(KEYS[5], string.len("task_result:") + 1), "requeue")
redis.call("HINCRBY", LP .. "tenant_queued", tenant_of(ARGV[1]), 1)
local held = redis.call("GET", KEYS[3])
if held and ARGV[2] ~= "" and held == ARGV[2] then
  redis.call("SET", KEYS[3], "revoked", "EX", ARGV[4])
  if tonumber(redis.call("GET", KEYS[4]) or "0") > 0 then
    redis.call("DECR", KEYS[4])
  end
  redis.call("SET", KEYS[5], ARGV[3], "EX", ARGV[4])
  publish_record(KEYS[5], ARGV[3])
elseif held and ARGV[2] == "" and string.match(held, "^%d+/(.*)$") == ARGV[5] then
  redis.call("SET", KEYS[3], "revoked", "EX", ARGV[4])
end
return 1
