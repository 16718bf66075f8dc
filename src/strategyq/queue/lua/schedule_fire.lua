-- schedule_fire.lua: enqueue one due run of a schedule, exactly once however
-- many workers and schedulers call it for the same slot.
-- KEYS[1] strategyq:schedules         HASH  name -> schedule spec (JSON)
-- KEYS[2] strategyq:schedules:paused  SET   names of paused schedules
-- KEYS[3] strategyq:schedules:last    HASH  name -> epoch seconds of the last slot enqueued
-- KEYS[4] task_result:{NAME:slot}     STRING result record of the run
-- KEYS[5] strategy_queue              LIST
-- ARGV[1] name   ARGV[2] slot (epoch seconds)   ARGV[3] task message
-- ARGV[4] queued record (JSON)   ARGV[5] result ttl seconds   ARGV[6] spec version (JSON text)
-- Returns "queued" | "missing" | "paused" | "changed" | "already"
if redis.call("HGET", KEYS[1], ARGV[1]) ~= ARGV[6] then
  -- Removed, or edited since the caller read it: the caller reads it again next tick.
  if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 0 then
    return "missing"
  end
  return "changed"
end
if redis.call("SISMEMBER", KEYS[2], ARGV[1]) == 1 then
  return "paused"
end
local last = tonumber(redis.call("HGET", KEYS[3], ARGV[1]) or "-1")
if last >= tonumber(ARGV[2]) or redis.call("EXISTS", KEYS[4]) == 1 then
  return "already"
end
redis.call("HSET", KEYS[3], ARGV[1], ARGV[2])
redis.call("SET", KEYS[4], ARGV[4], "EX", ARGV[5])
publish_record(KEYS[4], ARGV[4])
redis.call("LPUSH", KEYS[5], ARGV[3])
return "queued"
