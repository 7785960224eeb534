-- Reads a picture's chunks (cluster mode, src/cluster/mod.rs). ARGV: prefix, picture key kind
-- ("2": v2 picture, "1": v1 segment, "D": all of a v1 device), device, pid or the END's
-- position (or, "D", an arrival time).
-- v2: the picture's hash as a flat field/value list. v1 segment: { members, times, data } of
-- the data chunks timed in (previous END, END], in time order, ties by arrival; nil when the
-- END is gone; then when its first chunk arrived and the latest loss reported (ms). Device ("D", id = a time in ms): the same for the device's chunks that arrived
-- at or before that time (what expires).
local P, kind, dev, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if kind == '2' then
  return redis.call('HGETALL', P .. ':pic:2|' .. dev .. '|' .. id)
end
-- A v1 position's time ("<time, 16 digits>:<arrival>").
local function time_of(p)
  return tostring(tonumber(string.sub(p, 1, 16)))
end
local members = {}
if kind == 'D' then
  members = redis.call('ZRANGEBYSCORE', P .. ':v1a:' .. dev, '-inf', id)
  table.sort(members)
else
  if not redis.call('ZSCORE', P .. ':v1e:' .. dev, id) then
    return false
  end
  local prev = redis.call('ZREVRANGEBYLEX', P .. ':v1e:' .. dev, '(' .. id, '-', 'LIMIT', 0, 1)
  local lo = '-'
  if #prev > 0 then
    lo = '(' .. prev[1]
  end
  members = redis.call('ZRANGEBYLEX', P .. ':v1t:' .. dev, lo, '[' .. id)
end
local times = {}
local first_arrival = nil
for i, m in ipairs(members) do
  times[i] = time_of(m)
  local a = tonumber(redis.call('ZSCORE', P .. ':v1a:' .. dev, m))
  if a and (first_arrival == nil or a < first_arrival) then
    first_arrival = a
  end
end
local data = {}
if #members > 0 then
  data = redis.call('HMGET', P .. ':v1c:' .. dev, unpack(members))
end
if kind == 'D' then
  first_arrival = nil
end
-- For the redelivery grace: when the segment's first chunk arrived, and the latest loss any
-- instance reported (loss.lua).
local loss = redis.call('GET', P .. ':loss') or '0'
return { members, times, data, tostring(first_arrival or 0), loss }
