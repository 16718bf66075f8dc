-- reap.lua: recover the tasks of one dead worker (its heartbeat expired).
-- Each message goes back to the queue's consumer end (it runs next), or, when
-- its runs reached max_attempts, to the dead-letter list with an error result.
-- KEYS[1] strategyq:processing:{wid}  LIST
-- KEYS[2] strategyq:heartbeat:{wid}   STRING
-- KEYS[3] strategy_queue              LIST
-- KEYS[4] strategyq:dead_letter       LIST
-- KEYS[5] strategyq:workers           SET
-- KEYS[6] strategyq:recent            ZSET    recent-task index
-- Per-task keys are derived from ARGV[5] (key prefix) and the message's task_id:
--   task_result:{id}, {prefix}attempts:{id}, {prefix}token:{id}, {prefix}done:{id}
-- and, for a sweep's chunk, from its sweep's id: task_result:{sweep}, {prefix}cancel:{sweep},
--   {prefix}sweep:{sweep}, {prefix}sweep_chunks:{sweep}, {prefix}done:{sweep}
-- A lost run's token is replaced by "revoked" (TTL ARGV[3]).
-- strategyq:task:{id} (lua/_archive.lua) STRING  the message, while an archive is on
-- ARGV[1] worker id   ARGV[2] max attempts   ARGV[3] ttl seconds   ARGV[4] now (ISO)
-- ARGV[5] key prefix  ARGV[6] done-list ttl seconds  ARGV[7] now (epoch ms)
-- ARGV[8] recent-index cap
-- Returns {requeued, dead_lettered}, or {-1, -1} when the worker is alive after all.
if redis.call("EXISTS", KEYS[2]) == 1 then
  return {-1, -1}
end
local terminal = {completed = true, error = true, cancelled = true}
local max_attempts = tonumber(ARGV[2])
local requeued, dead = 0, 0
-- The processing list has the newest message on the left: walk from the left
-- and RPUSH, so the oldest ends rightmost and is taken first.
local messages = redis.call("LRANGE", KEYS[1], 0, -1)
for _, raw in ipairs(messages) do
  local ok, msg = pcall(cjson.decode, raw)
  -- Out of its tenant's in-flight count (lua/_lanes.lua), whatever becomes of it.
  hadd(LP .. "tenant_inflight", tenant_of_msg(ok and msg or nil), -1)
  local task_id = nil
  if ok and type(msg) == "table" and type(msg["task_id"]) == "string" then
    task_id = msg["task_id"]
  end
  if task_id == nil then
    redis.call("LPUSH", KEYS[4], cjson.encode({raw = raw, reason = "worker_lost",
      error = "message could not be parsed", worker_id = ARGV[1], at = ARGV[4]}))
    dead = dead + 1
  else
    local result_key = "task_result:" .. task_id
    local attempts_key = ARGV[5] .. "attempts:" .. task_id
    local token_key = ARGV[5] .. "token:" .. task_id
    local done_key = ARGV[5] .. "done:" .. task_id
    local finished = false
    local current = redis.call("GET", result_key)
    if current then
      local rok, rec = pcall(cjson.decode, current)
      finished = rok and type(rec) == "table" and terminal[rec["status"]] or false
    end
    if not finished then
      local attempts = tonumber(redis.call("GET", attempts_key) or "0")
      -- Revoked, not deleted: a late terminal write of the lost run is stale.
      redis.call("SET", token_key, "revoked", "EX", ARGV[3])
      if attempts >= max_attempts then
        local err = "the task's worker was lost " .. attempts .. " times (killed, out of memory or "
          .. "evicted) and it will not be retried; it is in the dead-letter list: inspect it with "
          .. "'strategyq dlq list' and retry it with 'strategyq dlq retry'"
        local record = cjson.encode({status = "error", data = {error = err,
          error_type = "worker_lost", attempts = attempts, completed_at = ARGV[4]},
          updated_at = ARGV[4]})
        redis.call("SET", result_key, record, "EX", ARGV[3])
        publish_record(result_key, record)
        archive_task(result_key, raw, ARGV[3])
        redis.call("LPUSH", KEYS[4], cjson.encode({raw = raw, reason = "worker_lost",
          error = err, task_id = task_id, attempts = attempts, worker_id = ARGV[1], at = ARGV[4]}))
        redis.call("DEL", attempts_key)
        redis.call("RPUSH", done_key, "error")
        redis.call("EXPIRE", done_key, ARGV[6])
        local task_type = type(msg["task_type"]) == "string" and msg["task_type"] or nil
        record_recent(KEYS[6], task_id, tonumber(ARGV[7]), tonumber(ARGV[3]), tonumber(ARGV[8]),
          "error", task_type)
        -- A sweep's chunk that keeps losing its worker fails its sweep, with the
        -- same error, and stops the sweep's other chunks.
        if task_type == "sweep_chunk" and type(msg["args"]) == "table"
            and type(msg["args"]["sweep_id"]) == "string" then
          local sweep_id = msg["args"]["sweep_id"]
          local sweep_key = "task_result:" .. sweep_id
          local sweep_now = redis.call("GET", sweep_key)
          local sok, srec = pcall(cjson.decode, sweep_now or "null")
          if sok and type(srec) == "table" and srec["status"] == "running" then
            redis.call("SET", sweep_key, record, "EX", ARGV[3])
            publish_record(sweep_key, record)
            redis.call("SET", ARGV[5] .. "cancel:" .. sweep_id, "1", "EX", ARGV[3])
            redis.call("DEL", ARGV[5] .. "sweep:" .. sweep_id, ARGV[5] .. "sweep_chunks:" .. sweep_id)
            redis.call("RPUSH", ARGV[5] .. "done:" .. sweep_id, "error")
            redis.call("EXPIRE", ARGV[5] .. "done:" .. sweep_id, ARGV[6])
            record_recent(KEYS[6], sweep_id, tonumber(ARGV[7]), tonumber(ARGV[3]), tonumber(ARGV[8]),
              "error", "sweep")
          end
        end
        dead = dead + 1
      else
        redis.call("RPUSH", KEYS[3], raw)
        -- Counted as queued now, and routed to the front of its tenant's list.
        redis.call("HSET", LP .. "admitted", task_id, "requeue")
        redis.call("HINCRBY", LP .. "tenant_queued", tenant_of_msg(msg), 1)
        requeued = requeued + 1
      end
    end
  end
end
redis.call("DEL", KEYS[1])
redis.call("SREM", KEYS[5], ARGV[1])
return {requeued, dead}
