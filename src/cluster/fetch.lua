-- Reads a picture's chunks (cluster mode, src/cluster/mod.rs). ARGV: prefix, picture key kind
-- ("2": v2 picture, "1": v1 segment, "D": all of a v1 device), device, pid or END time.
-- v2: the picture's hash as a flat field/value list. v1 segment: { members, times, data } of
-- the data chunks timed in (previous END, END], in time order, ties by arrival; nil when the
-- END is gone. Device: the same for every chunk of the device.
local P, kind, dev, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if kind == '2' then
  return redis.call('HGETALL', P .. ':pic:2|' .. dev .. '|' .. id)
end
local lo, hi = '-inf', '+inf'
if kind == '1' then
  if not redis.call('ZSCORE', P .. ':v1e:' .. dev, id) then
    return false
  end
  hi = id
  local prev = redis.call('ZREVRANGEBYSCORE', P .. ':v1e:' .. dev, '(' .. id, '-inf', 'LIMIT', 0, 1)
  if #prev > 0 then
    lo = '(' .. prev[1]
  end
end
local got = redis.call('ZRANGEBYSCORE', P .. ':v1t:' .. dev, lo, hi, 'WITHSCORES')
local members, times = {}, {}
for i = 1, #got, 2 do
  members[#members + 1] = got[i]
  times[#times + 1] = got[i + 1]
end
local data = {}
if #members > 0 then
  data = redis.call('HMGET', P .. ':v1c:' .. dev, unpack(members))
end
return { members, times, data }
