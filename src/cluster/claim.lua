-- Claims a picture for this instance with a lease (cluster mode, src/cluster/mod.rs).
-- ARGV: prefix, picture key, instance id, lease (ms), now (ms), expiry age (ms; 0: a normal
-- claim, else an expiry claim, which needs the picture open at least that long).
-- Returns { status, version }: status 'done' (finished already), 'gone' (nothing to claim),
-- 'fresh' (not old enough to expire), 'held' (another instance's live lease), 'won',
-- 'takeover' (won, and the last claimant was another instance whose lease ran out), 'mine'
-- (renewed); version: how often the picture was marked ready so far (for unclaim.lua).
local P, pk, me = ARGV[1], ARGV[2], ARGV[3]
local lease, now, age = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('EXISTS', P .. ':done:' .. pk) == 1 then
  return { 'done', 0 }
end
if age > 0 then
  local opened = redis.call('ZSCORE', P .. ':open', pk)
  if not opened then
    return { 'gone', 0 }
  end
  if tonumber(opened) > now - age then
    return { 'fresh', 0 }
  end
end
local version = tonumber(redis.call('HGET', P .. ':touch', pk) or '0')
local c = P .. ':claim:' .. pk
local cur = redis.call('GET', c)
if cur then
  if cur == me then
    redis.call('PEXPIRE', c, lease)
    return { 'mine', version }
  end
  return { 'held', 0 }
end
redis.call('SET', c, me, 'PX', lease)
local last = redis.call('HGET', P .. ':claimed', pk)
redis.call('HSET', P .. ':claimed', pk, me)
if last and last ~= me then
  return { 'takeover', version }
end
return { 'won', version }
