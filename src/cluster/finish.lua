-- Finishes a picture after its output (or quarantine) write succeeded (cluster mode,
-- src/cluster/mod.rs): deletes its chunks, marks it done, drops its claim.
-- ARGV: prefix, picture key, kind ("2", "1" segment, "D" device), device, pid or END time,
-- done TTL (ms), v1 window (ms), (unused), then the v1 members written.
-- Returns 1, or 0 when it was finished already (by another instance whose lease ran out).
local P, pk, kind, dev, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local done_ttl, window = tonumber(ARGV[6]), tonumber(ARGV[7])
local done = P .. ':done:' .. pk
redis.call('DEL', P .. ':claim:' .. pk)
redis.call('HDEL', P .. ':claimed', pk)
redis.call('ZREM', P .. ':ready', pk)
redis.call('HDEL', P .. ':touch', pk)
if kind == '2' then
  redis.call('ZREM', P .. ':open', pk)
  redis.call('DEL', P .. ':pic:' .. pk)
  if not redis.call('SET', done, '1', 'NX', 'PX', done_ttl) then
    return 0
  end
  return 1
end
if kind == '1' and not redis.call('SET', done, '1', 'NX', 'PX', done_ttl) then
  return 0
end
local members = {}
for i = 9, #ARGV do
  members[#members + 1] = ARGV[i]
end
if #members > 0 then
  redis.call('HDEL', P .. ':v1c:' .. dev, unpack(members))
  redis.call('ZREM', P .. ':v1t:' .. dev, unpack(members))
  redis.call('ZREM', P .. ':v1a:' .. dev, unpack(members))
end
local ends = P .. ':v1e:' .. dev
local times = P .. ':v1E:' .. dev
local settled = P .. ':v1x:' .. dev
local firsts = P .. ':v1d:' .. dev
if kind == '1' then
  redis.call('SADD', settled, id)
  -- Positions compare as strings; the members written, sorted, start with the first.
  table.sort(members)
  redis.call('HSET', firsts, id, members[1] or id)
  -- ENDs far below this one cut nothing any more.
  local upto = string.format('%016d', math.max(0, tonumber(string.sub(id, 1, 16)) - window))
  local old = redis.call('ZRANGEBYLEX', ends, '-', '(' .. upto)
  if #old > 0 then
    redis.call('ZREM', ends, unpack(old))
    redis.call('SREM', settled, unpack(old))
    redis.call('HDEL', firsts, unpack(old))
    for _, e in ipairs(old) do
      redis.call('HDEL', times, tostring(tonumber(string.sub(e, 1, 16))))
    end
  end
end
local oldest = redis.call('ZRANGE', P .. ':v1a:' .. dev, 0, 0, 'WITHSCORES')
if #oldest > 0 then
  redis.call('ZADD', P .. ':open', oldest[2], '1|' .. dev)
else
  redis.call('ZREM', P .. ':open', '1|' .. dev)
  if kind == 'D' then
    -- Nothing of the device is open: its ENDs (an END that never got chunks) go too.
    redis.call('DEL', ends, settled, firsts, times)
  end
end
return 1
