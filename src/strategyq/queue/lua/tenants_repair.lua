-- tenants_repair.lua: rebuild each tenant's in-flight count from the processing lists of
-- the registered workers (run by the reaper, after it reaped): whatever a crash left
-- behind, the counts are right again within one reaper interval.
-- KEYS[1] strategyq:workers           SET
-- KEYS[2] strategyq:tenant_inflight   HASH  tenant -> messages in processing lists
-- {prefix}processing:{wid} LIST of each worker is derived from ARGV[1].
-- ARGV[1] key prefix
-- Returns the number of messages in flight.
local counts, total = {}, 0
for _, wid in ipairs(redis.call("SMEMBERS", KEYS[1])) do
  for _, raw in ipairs(redis.call("LRANGE", ARGV[1] .. "processing:" .. wid, 0, -1)) do
    local t = tenant_of(raw)
    counts[t] = (counts[t] or 0) + 1
    total = total + 1
  end
end
redis.call("DEL", KEYS[2])
for t, n in pairs(counts) do
  redis.call("HSET", KEYS[2], t, n)
end
return total
