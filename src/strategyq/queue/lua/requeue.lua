-- requeue.lua: hand a task this worker could not finish (shutdown past the
-- grace period) back to the queue's consumer end, so it runs next. The run's
-- token is dropped so a late write from it is stale, and the run does not
-- count against max_attempts.
-- KEYS[1] strategyq:processing:{wid}  LIST
-- KEYS[2] strategy_queue              LIST
-- KEYS[3] strategyq:token:{id}        STRING
-- KEYS[4] strategyq:attempts:{id}     STRING
-- KEYS[5] task_result:{id}            STRING
-- ARGV[1] raw message   ARGV[2] token   ARGV[3] queued record (JSON)   ARGV[4] ttl seconds
-- Returns 1 when requeued, 0 when the message was no longer ours.
if redis.call("LREM", KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call("RPUSH", KEYS[2], ARGV[1])
if redis.call("GET", KEYS[3]) == ARGV[2] then
  redis.call("DEL", KEYS[3])
  if tonumber(redis.call("GET", KEYS[4]) or "0") > 0 then
    redis.call("DECR", KEYS[4])
  end
  redis.call("SET", KEYS[5], ARGV[3], "EX", ARGV[4])
end
return 1
