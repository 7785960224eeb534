-- Gives a claim back: the picture is not whole yet (cluster mode, src/cluster/mod.rs).
-- ARGV: prefix, picture key, the version claim.lua returned.
-- Takes the picture off the ready list only if nothing marked it ready since the claim;
-- returns 1 when something did (a chunk came meanwhile: check again), else 0.
local P, pk, version = ARGV[1], ARGV[2], ARGV[3]
redis.call('DEL', P .. ':claim:' .. pk)
redis.call('HDEL', P .. ':claimed', pk)
local now = redis.call('HGET', P .. ':touch', pk) or '0'
if now ~= version then
  return 1
end
redis.call('ZREM', P .. ':ready', pk)
redis.call('HDEL', P .. ':touch', pk)
return 0
