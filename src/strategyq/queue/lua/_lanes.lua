-- _lanes.lua: tenants and lanes, prepended to every script that puts a message in a
-- lane or takes one out of a worker's processing list (queue/keys.py names each key).
-- strategyq:lanes                 HASH  lane -> weight (operator lanes; builtin ones below)
-- The lanes of one queue live under its lane space, LQ: "strategyq:" for strategy_queue,
-- "strategyq:q:{queue}:" for another queue (set_queue below; keys.lane_space):
-- {LQ}lane:{lane}:{tenant}        LIST  "<routed at ms> <raw>", newest on the left
-- {LQ}ring:{lane}                 LIST  tenants with tasks waiting in the lane, each once
-- {LQ}lane_depth                  HASH  lane -> tasks waiting in it
-- {LQ}lane_credit                 HASH  lane -> smooth weighted round-robin credit
-- strategyq:tenant_queued         HASH  tenant -> its tasks waiting
-- strategyq:tenant_inflight       HASH  tenant -> its messages in processing lists
-- strategyq:admitted              HASH  task id -> "push" | "requeue" (already counted)
-- strategyq:tenant:{tenant}       HASH  quotas: max_in_flight, max_queued, max_result_bytes
-- strategyq:tenant_results:{t}    ZSET  "<bytes>:<id>" by expiry ms
-- strategyq:tenant_result_bytes   HASH  tenant -> bytes stored
-- The rules match protocol/tenancy.py: a message without "tenant" is tenant "default";
-- without "priority" it runs in "interactive" when a screen, else in "batch".
local LP = "strategyq:"
local LQ = LP
local BUILTIN_LANES = {interactive = 4, batch = 1}

local function set_queue(queue)
  if queue == "strategy_queue" then
    LQ = LP
  else
    LQ = LP .. "q:" .. queue .. ":"
  end
end

local function lane_weights()
  local weights = {}
  for name, w in pairs(BUILTIN_LANES) do weights[name] = w end
  local set = redis.call("HGETALL", LP .. "lanes")
  for i = 1, #set, 2 do
    weights[set[i]] = tonumber(set[i + 1]) or 1
  end
  return weights
end

local function valid_tenant(t)
  return type(t) == "string" and #t <= 64 and string.match(t, "^[%w][%w%._:@%+%-]*$") ~= nil
end

-- The tenant a message counts against: "default" when it names none (or a bad one:
-- the worker refuses such a message, and counts it where it was counted here).
local function tenant_of_msg(msg)
  if type(msg) == "table" and valid_tenant(msg["tenant"]) then
    return msg["tenant"]
  end
  return "default"
end

local function tenant_of(raw)
  local ok, msg = pcall(cjson.decode, raw)
  return tenant_of_msg(ok and msg or nil)
end

local function hadd(key, field, by)
  -- A counter field that reaches 0 (or below, after a repair) is removed.
  if redis.call("HINCRBY", key, field, by) <= 0 then
    redis.call("HDEL", key, field)
  end
end

-- Take one message out of a processing list, and out of its tenant's in-flight count.
local function release(processing_key, raw)
  local n = redis.call("LREM", processing_key, 1, raw)
  if n > 0 then
    hadd(LP .. "tenant_inflight", tenant_of(raw), -n)
  end
  return n
end

local function quota(tenant, name)
  return tonumber(redis.call("HGET", LP .. "tenant:" .. tenant, name) or "")
end

-- Bytes of the tenant's results still stored (expired ones subtracted first).
local function result_bytes(tenant, now_ms)
  local zkey = LP .. "tenant_results:" .. tenant
  local gone = redis.call("ZRANGEBYSCORE", zkey, "-inf", now_ms)
  if #gone > 0 then
    local bytes = 0
    for _, member in ipairs(gone) do
      bytes = bytes + (tonumber(string.match(member, "^(%d+):")) or 0)
    end
    redis.call("ZREMRANGEBYSCORE", zkey, "-inf", now_ms)
    hadd(LP .. "tenant_result_bytes", tenant, -bytes)
  end
  return tonumber(redis.call("HGET", LP .. "tenant_result_bytes", tenant) or "0")
end

-- Count a terminal result's bytes against the message's tenant, while the result lives.
-- Only a tenant with a max_result_bytes quota is counted (from when the quota is set):
-- the others keep no bookkeeping per result.
local function account_result(raw, task_id, nbytes, ttl_s, now_ms)
  local tenant = tenant_of(raw)
  if not quota(tenant, "max_result_bytes") then
    return
  end
  local zkey = LP .. "tenant_results:" .. tenant
  local member_prefix = ":" .. task_id
  local expiry = now_ms + ttl_s * 1000
  result_bytes(tenant, now_ms)
  redis.call("ZADD", zkey, expiry, nbytes .. member_prefix)
  redis.call("EXPIRE", zkey, ttl_s)
  redis.call("HINCRBY", LP .. "tenant_result_bytes", tenant, nbytes)
end

-- Where a message waits: {tenant, lane} or {nil, reason, detail}.
local function lane_of(msg, weights)
  if type(msg) ~= "table" then
    return {nil, "malformed"}
  end
  local tenant = msg["tenant"]
  if tenant == nil or tenant == cjson.null then
    tenant = "default"
  elseif not valid_tenant(tenant) then
    return {nil, "malformed"}
  end
  local lane = msg["priority"]
  if lane == nil or lane == cjson.null then
    lane = msg["task_type"] == "screening" and "interactive" or "batch"
  end
  if type(lane) ~= "string" then
    return {nil, "malformed"}
  end
  if not weights[lane] then
    return {nil, "unknown_lane", lane}
  end
  return {tenant, lane}
end

-- Put a raw message in its lane: at the back of its tenant's list, or at the front (a
-- requeued run goes first within its tenant). Counts it as queued unless `counted`.
local function enqueue(raw, tenant, lane, now_ms, front, counted)
  local key = LQ .. "lane:" .. lane .. ":" .. tenant
  local entry = now_ms .. " " .. raw
  local n
  if front then
    n = redis.call("RPUSH", key, entry)
  else
    n = redis.call("LPUSH", key, entry)
  end
  if n == 1 then
    redis.call("RPUSH", LQ .. "ring:" .. lane, tenant)
  end
  redis.call("HINCRBY", LQ .. "lane_depth", lane, 1)
  if not counted then
    redis.call("HINCRBY", LP .. "tenant_queued", tenant, 1)
  end
end

-- Take a raw message out of the lane it waits in, if it waits there (after a failover
-- the new primary can hold a message routed into its lane whose claim was lost with the
-- old primary, while its run finished). Scans that one lane list: a rare path.
local function unqueue(raw)
  local ok, msg = pcall(cjson.decode, raw)
  local where = lane_of(ok and msg or nil, lane_weights())
  local tenant, lane = where[1], where[2]
  if not tenant then
    return 0
  end
  local key = LQ .. "lane:" .. lane .. ":" .. tenant
  for _, entry in ipairs(redis.call("LRANGE", key, 0, -1)) do
    local space = string.find(entry, " ", 1, true)
    if space and string.sub(entry, space + 1) == raw then
      redis.call("LREM", key, -1, entry)
      if redis.call("LLEN", key) == 0 then
        redis.call("LREM", LQ .. "ring:" .. lane, -1, tenant)
      end
      if redis.call("HINCRBY", LQ .. "lane_depth", lane, -1) <= 0 then
        redis.call("HDEL", LQ .. "lane_depth", lane)
        redis.call("HDEL", LQ .. "lane_credit", lane)
      end
      hadd(LP .. "tenant_queued", tenant, -1)
      return 1
    end
  end
  return 0
end
