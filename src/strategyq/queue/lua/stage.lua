-- stage.lua: update a running task's record, only while this run holds the
-- fencing token (a stale run never writes "running" over anything).
-- KEYS[1] task_result:{id}   STRING
-- KEYS[2] strategyq:token:{id}  STRING
-- ARGV[1] token   ARGV[2] running record (JSON)   ARGV[3] ttl seconds
-- Returns 1 when written, 0 when the token is stale.
if redis.call("GET", KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
publish_record(KEYS[1], ARGV[2])
return 1
