-- _recent.lua: prepended to every script that writes a terminal result, so the
-- recent-task index (strategyq:recent, a ZSET scored by epoch milliseconds) is
-- written in the same atomic step. Trimmed by age (results older than the
-- result TTL have expired) and by count; the key expires with its newest result.
local function record_recent(key, task_id, now_ms, ttl_s, max_count)
  redis.call("ZADD", key, now_ms, task_id)
  redis.call("ZREMRANGEBYSCORE", key, "-inf", "(" .. (now_ms - ttl_s * 1000))
  redis.call("ZREMRANGEBYRANK", key, 0, -(max_count + 1))
  redis.call("EXPIRE", key, ttl_s)
end
