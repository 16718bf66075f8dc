-- push.lua: what the Python producer does for one task, in one command: check the
-- task's lane and its tenant's quotas, write the "queued" record, then LPUSH the message
-- (producers that speak plain Redis, like a Go backend, LPUSH only; a worker's take
-- checks their messages as it routes them). lua/_lanes.lua has the lane and tenant keys.
-- A task id names one task while its record is kept: an id that has a record
-- (queued, running, or finished within the result TTL) is refused.
-- KEYS[1] task_result:{id}   STRING  result record
-- KEYS[2] strategy_queue     LIST
-- KEYS[3] strategyq:tenant_combinations:{tenant}:{day}  STRING  (read only here)
-- ARGV[1] queued record (JSON)   ARGV[2] ttl seconds   ARGV[3] task message
-- ARGV[4] tenant   ARGV[5] lane   ARGV[6] sweep combinations (0: not a sweep)
-- ARGV[7] now (epoch ms)   ARGV[8] task id
-- Returns the queue's length, {"in_use", status} when the id is taken,
-- {"unknown_lane", lanes...} or {"quota", name, limit, used}.
local current = redis.call("GET", KEYS[1])
if current then
  local status = "unknown"
  local ok, rec = pcall(cjson.decode, current)
  if ok and type(rec) == "table" and type(rec["status"]) == "string" then
    status = rec["status"]
  end
  return {"in_use", status}
end
local tenant, lane = ARGV[4], ARGV[5]
local weights = lane_weights()
if not weights[lane] then
  local names = {"unknown_lane"}
  for name in pairs(weights) do table.insert(names, name) end
  return names
end
local max_queued = quota(tenant, "max_queued")
if max_queued then
  local queued = tonumber(redis.call("HGET", LP .. "tenant_queued", tenant) or "0")
  if queued >= max_queued then
    return {"quota", "max_queued", max_queued, queued}
  end
end
local max_bytes = quota(tenant, "max_result_bytes")
if max_bytes then
  local used = result_bytes(tenant, tonumber(ARGV[7]))
  if used >= max_bytes then
    return {"quota", "max_result_bytes", max_bytes, used}
  end
end
local combinations = tonumber(ARGV[6])
local max_combinations = quota(tenant, "max_combinations")
if combinations > 0 and max_combinations then
  local used = tonumber(redis.call("GET", KEYS[3]) or "0")
  if used + combinations > max_combinations then
    return {"quota", "max_combinations", max_combinations, used}
  end
end
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
publish_record(KEYS[1], ARGV[1])
redis.call("HSET", LP .. "admitted", ARGV[8], "push")
redis.call("HINCRBY", LP .. "tenant_queued", tenant, 1)
return redis.call("LPUSH", KEYS[2], ARGV[3])
