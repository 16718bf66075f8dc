-- combinations.lua: count a sweep's combinations against its tenant's max_combinations
-- for the day (UTC), atomically, when its worker fans it out (lua/_lanes.lua).
-- KEYS[1] strategyq:tenant_combinations:{tenant}:{day}  STRING  TTL two days
-- ARGV[1] tenant   ARGV[2] combinations
-- Returns {1, used after} when counted, {0, used, limit} when over the quota.
-- A tenant without the quota is not counted (no key per tenant and day for nothing).
local n = tonumber(ARGV[2])
local cap = quota(ARGV[1], "max_combinations")
if not cap then
  return {1, 0}
end
local used = tonumber(redis.call("GET", KEYS[1]) or "0")
if used + n > cap then
  return {0, used, cap}
end
used = redis.call("INCRBY", KEYS[1], n)
redis.call("EXPIRE", KEYS[1], 172800)
return {1, used}
