-- _events.lua: prepended to every script that writes a task's result record, so
-- each record written (queued, running with its stage, terminal) is also
-- published on the task's channel, strategyq:events:{id}, in the same step.
-- Nothing is stored: a client that is not subscribed misses nothing it cannot
-- read from task_result:{id} itself.
local function publish_record(result_key, record)
  local task_id = string.sub(result_key, string.len("task_result:") + 1)
  redis.call("PUBLISH", "strategyq:events:" .. task_id, record)
end
