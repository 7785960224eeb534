-- An instance's heartbeat (cluster mode, src/cluster/mod.rs), sent by each sweep. ARGV: prefix,
-- instance id, now (ms), time to live (ms). An instance whose heartbeat ran out died (or
-- stopped): what it had in flight comes back to the group later, so its death is recorded as a
-- loss (v1 pictures straddling it wait for the redelivery grace), once. Returns how many were
-- found dead.
local P, me, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local set = P .. ':instances'
redis.call('SET', P .. ':alive:' .. me, now, 'PX', ttl)
redis.call('SADD', set, me)
local dead = 0
for _, m in ipairs(redis.call('SMEMBERS', set)) do
  if m ~= me and redis.call('EXISTS', P .. ':alive:' .. m) == 0 then
    redis.call('SREM', set, m)
    dead = dead + 1
  end
end
if dead > 0 then
  local key = P .. ':loss'
  if tonumber(now) > tonumber(redis.call('GET', key) or '0') then
    redis.call('SET', key, now)
  end
end
return dead
