-- Reads a picture's chunks (cluster mode, src/cluster/mod.rs). ARGV: prefix, picture key kind
-- ("2": v2 picture, "1": v1 segment, "D": all of a v1 device), device, pid or END time.
-- v2: the picture's hash as a flat field/value list. v1 segment: { members, times, data } of
-- the data chunks timed in (previous END, END], in time order, ties by arrival; nil when the
-- END is gone. Device ("D", id = a time in ms): the same for the device's chunks that arrived
-- at or before that time (what expires).
local P, kind, dev, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if kind == '2' then
  return redis.call('HGETALL', P .. ':pic:2|' .. dev .. '|' .. id)
end
if kind == 'D' then
  local arrived = redis.call('ZRANGEBYSCORE', P .. ':v1a:' .. dev, '-inf', id)
  local by_time = {}
  for _, m in ipairs(arrived) do
    local t = redis.call('ZSCORE', P .. ':v1t:' .. dev, m)
    if t then
      by_time[#by_time + 1] = { m, tonumber(t), t }
    end
  end
  table.sort(by_time, function(a, b)
    if a[2] == b[2] then
      return a[1] < b[1]
    end
    return a[2] < b[2]
  end)
  local members, times = {}, {}
  for i, e in ipairs(by_time) do
    members[i] = e[1]
    times[i] = e[3]
  end
  local data = {}
  if #members > 0 then
    data = redis.call('HMGET', P .. ':v1c:' .. dev, unpack(members))
  end
  return { members, times, data }
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
