-- _archive.lua: prepended to every script that writes a terminal result (and to
-- sweep_fanout.lua), so that while an archive is on the archiver finds every run
-- in the same atomic step that ended it. Off (no strategyq:archive key): nothing.
-- strategyq:archive        STRING  the feed's length cap; present while an archive is on
-- strategyq:archive:feed   STREAM  one entry per terminal write: id, status, type, ms
-- strategyq:task:{id}      STRING  the task's message (its args), TTL the result's
local function archive_cap()
  return redis.call("GET", "strategyq:archive")
end

-- The task's message, kept for the archiver as long as its result is.
local function archive_task(result_key, raw, ttl_s)
  if archive_cap() then
    local task_id = string.sub(result_key, string.len("task_result:") + 1)
    redis.call("SET", "strategyq:task:" .. task_id, raw, "EX", ttl_s)
  end
end

-- One entry on the feed per run that ended (a sweep's chunks are not runs).
local function archive_feed(task_id, status, task_type, now_ms)
  local cap = archive_cap()
  if cap and task_type ~= "sweep_chunk" then
    redis.call("XADD", "strategyq:archive:feed", "MAXLEN", "~", cap, "*",
      "id", task_id, "status", status or "", "type", task_type or "", "ms", now_ms)
  end
end
