-- _recent.lua: prepended to every script that writes a terminal result, so the
-- recent-task index (strategyq:recent, a ZSET scored by epoch milliseconds) is
-- written in the same atomic step (and the archive's feed, lua/_archive.lua). Trimmed by age (results older than the
-- result TTL have expired) and by count; the key expires with its newest result.
local function trim_recent(key, now_ms, ttl_s, max_count)
  redis.call("ZREMRANGEBYSCORE", key, "-inf", "(" .. (now_ms - ttl_s * 1000))
  redis.call("ZREMRANGEBYRANK", key, 0, -(max_count + 1))
  redis.call("EXPIRE", key, ttl_s)
end

-- The same entry also goes into the filtered indexes the dashboard lists from
-- (one terminal status, one task type, or both): {key}:status:{status},
-- {key}:type:{type}, {key}:{type}:{status}. A type that is not known (a task
-- cancelled while still queued) leaves it out of the type indexes only.
local function record_recent(key, task_id, now_ms, ttl_s, max_count, status, task_type)
  archive_feed(task_id, status, task_type, now_ms)
  local indexes = {key}
  if status and status ~= "" then
    table.insert(indexes, key .. ":status:" .. status)
  end
  if task_type and task_type ~= "" then
    table.insert(indexes, key .. ":type:" .. task_type)
    if status and status ~= "" then
      table.insert(indexes, key .. ":" .. task_type .. ":" .. status)
    end
  end
  for _, index in ipairs(indexes) do
    redis.call("ZADD", index, now_ms, task_id)
    trim_recent(index, now_ms, ttl_s, max_count)
  end
end
