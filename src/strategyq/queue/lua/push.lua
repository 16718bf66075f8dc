-- push.lua: what the Python producer does for one task, in one command: write
-- the "queued" record, then LPUSH the message (producers that speak plain
-- Redis, like a Go backend, LPUSH only; both are served the same way).
-- KEYS[1] task_result:{id}   STRING  result record
-- KEYS[2] strategy_queue     LIST
-- ARGV[1] queued record (JSON)   ARGV[2] ttl seconds   ARGV[3] task message
-- Returns the queue's length.
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
return redis.call("LPUSH", KEYS[2], ARGV[3])
