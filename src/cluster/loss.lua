-- Records a loss of deliveries in flight (a connection lost, deliveries released, a restart)
-- reported by any instance (cluster mode, src/cluster/mod.rs): v1 pictures whose chunks
-- straddle it wait for the redelivery grace. ARGV: prefix, time (ms). Keeps the latest.
local key = ARGV[1] .. ':loss'
local cur = tonumber(redis.call('GET', key) or '0')
if tonumber(ARGV[2]) > cur then
  redis.call('SET', key, ARGV[2])
end
return 1
