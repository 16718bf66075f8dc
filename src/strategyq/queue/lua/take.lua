-- take.lua: a worker takes its next message, atomically (lua/_lanes.lua has the lane keys).
-- 1. Route: move what waits in the queue's list (producers' LPUSHes, requeues) into the
--    lanes, oldest first, up to ARGV[2] messages. A raw message over its tenant's
--    max_queued or max_result_bytes quota, or one whose tenant or lane is unusable, is not
--    queued: it goes straight to this worker's processing list and is returned with the
--    reason, so the worker writes its error result (nothing is lost).
-- 2. Pick: a lane by smooth weighted round-robin among the lanes with tasks waiting, then
--    within it the tenant at the head of its ring that is under its max_in_flight (the
--    ring rotates: tenants are served in turn), and its oldest task.
-- 3. Move that message into this worker's processing list (as BLMOVE did before lanes),
--    count it in flight, and keep its wait time.
-- KEYS[1] strategy_queue               LIST    (its name sets the lane space, LQ)
-- KEYS[2] strategyq:processing:{wid}   LIST
-- ARGV[1] now (epoch ms)   ARGV[2] routing batch   ARGV[3] wait samples kept
-- ARGV[4] result ttl seconds (the wait samples and the pairs' index expire with results)
-- Bookkeeping that is not needed any more goes: a lane's credit when it empties, a
-- tenant's ring entry when its list empties, counters at 0.
-- Returns nil (nothing to take) | {raw, "", tenant, lane, wait ms, max_result_bytes or ""}
--       | {raw, reason, tenant, quota or lane, limit, used}  (reason: quota | unknown_lane
--         | malformed; not queued, to be answered with an error result)
set_queue(KEYS[1])
local now = tonumber(ARGV[1])
local weights = lane_weights()

local function deliver(raw, tenant)
  redis.call("LPUSH", KEYS[2], raw)
  redis.call("HINCRBY", LP .. "tenant_inflight", tenant, 1)
end

for _ = 1, tonumber(ARGV[2]) do
  local raw = redis.call("RPOP", KEYS[1])
  if not raw then
    break
  end
  local ok, msg = pcall(cjson.decode, raw)
  local where = lane_of(ok and msg or nil, weights)
  local task_id = ok and type(msg) == "table" and msg["task_id"] or nil
  local admitted = false
  if type(task_id) == "string" then
    admitted = redis.call("HGET", LP .. "admitted", task_id)
    if admitted then
      redis.call("HDEL", LP .. "admitted", task_id)
    end
  end
  local tenant, lane = where[1], where[2]
  if tenant == nil then
    local t = tenant_of_msg(ok and msg or nil)
    if admitted then
      hadd(LP .. "tenant_queued", t, -1)
    end
    deliver(raw, t)
    return {raw, where[2], t, where[3] or "", 0, 0}
  end
  if not admitted then
    local max_queued = quota(tenant, "max_queued")
    if max_queued then
      local queued = tonumber(redis.call("HGET", LP .. "tenant_queued", tenant) or "0")
      if queued >= max_queued then
        deliver(raw, tenant)
        return {raw, "quota", tenant, "max_queued", max_queued, queued}
      end
    end
    local max_bytes = quota(tenant, "max_result_bytes")
    if max_bytes then
      local used = result_bytes(tenant, now)
      if used >= max_bytes then
        deliver(raw, tenant)
        return {raw, "quota", tenant, "max_result_bytes", max_bytes, used}
      end
    end
  end
  enqueue(raw, tenant, lane, now, admitted == "requeue", admitted ~= false)
end

-- Lanes with tasks waiting, and their credits.
local depth = {}
local flat = redis.call("HGETALL", LQ .. "lane_depth")
for i = 1, #flat, 2 do
  if tonumber(flat[i + 1]) > 0 and weights[flat[i]] then
    depth[flat[i]] = true
  end
end
local credit = {}
flat = redis.call("HGETALL", LQ .. "lane_credit")
for i = 1, #flat, 2 do
  credit[flat[i]] = tonumber(flat[i + 1]) or 0
end

-- The tenant of `lane` to serve next: the first in ring order under its max_in_flight.
local function next_tenant(lane)
  local ring = LQ .. "ring:" .. lane
  for _ = 1, redis.call("LLEN", ring) do
    local tenant = redis.call("LMOVE", ring, ring, "LEFT", "RIGHT")
    local key = LQ .. "lane:" .. lane .. ":" .. tenant
    if redis.call("LLEN", key) == 0 then
      -- Not waiting after all (a repair): out of the ring.
      redis.call("LREM", ring, -1, tenant)
    else
      local cap = quota(tenant, "max_in_flight")
      if not cap or tonumber(redis.call("HGET", LP .. "tenant_inflight", tenant) or "0") < cap then
        return tenant, key, ring
      end
    end
  end
  return nil
end

while true do
  local best, best_credit, total, eligible = nil, nil, 0, 0
  for lane in pairs(depth) do
    eligible = eligible + 1
    local w = weights[lane]
    local c = (credit[lane] or 0) + w
    credit[lane] = c
    total = total + w
    if best == nil or c > best_credit or (c == best_credit and w > weights[best]) then
      best, best_credit = lane, c
    end
  end
  if best == nil then
    return nil
  end
  credit[best] = credit[best] - total
  local tenant, key, ring = next_tenant(best)
  if tenant then
    local entry = redis.call("RPOP", key)
    if redis.call("LLEN", key) == 0 then
      redis.call("LREM", ring, -1, tenant)
    end
    -- With one lane waiting the credits do not change (it gains and loses its own weight).
    if eligible > 1 then
      for lane, c in pairs(credit) do
        if depth[lane] then
          redis.call("HSET", LQ .. "lane_credit", lane, c)
        end
      end
    end
    if redis.call("HINCRBY", LQ .. "lane_depth", best, -1) <= 0 then
      redis.call("HDEL", LQ .. "lane_depth", best)
      redis.call("HDEL", LQ .. "lane_credit", best)
    end
    hadd(LP .. "tenant_queued", tenant, -1)
    local space = string.find(entry, " ", 1, true)
    local routed = tonumber(string.sub(entry, 1, space - 1)) or now
    local raw = string.sub(entry, space + 1)
    deliver(raw, tenant)
    local wait = math.max(now - routed, 0)
    local wkey = LP .. "waits:" .. best .. ":" .. tenant
    redis.call("LPUSH", wkey, wait)
    redis.call("LTRIM", wkey, 0, tonumber(ARGV[3]) - 1)
    redis.call("EXPIRE", wkey, ARGV[4])
    redis.call("ZADD", LP .. "lane_tenants", now, best .. "\t" .. tenant)
    redis.call("EXPIRE", LP .. "lane_tenants", ARGV[4])
    return {raw, "", tenant, best, wait, redis.call("HGET", LP .. "tenant:" .. tenant,
      "max_result_bytes") or ""}
  end
  -- Every tenant of this lane is at its max_in_flight: try the other lanes.
  depth[best] = nil
  if redis.call("LLEN", LQ .. "ring:" .. best) == 0 then
    redis.call("HDEL", LQ .. "lane_depth", best)
    redis.call("HDEL", LQ .. "lane_credit", best)
  end
end
