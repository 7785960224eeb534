-- Stores one batch of accepted chunks atomically (cluster mode, src/cluster/mod.rs).
-- ARGV[1] key prefix (with its hash tag), ARGV[2] now (ms), ARGV[3] messageId TTL (ms),
-- ARGV[4] v1 window (ms: fingerprints and settled ENDs kept this long), then 10 fields per chunk:
-- kind ("2" v2, "1" v1 data, "E" v1 END), messageId, device, pid, seq, count, size, crc,
-- time (ms), data.
-- Returns { statuses, ready }: one status per chunk (0 stored, 1 duplicate messageId,
-- 2 duplicate chunk (v2 seq, v1 fingerprint or END), 3 chunk of a finished picture,
-- 4 header conflict, 5 v1 chunk or END inside a finished picture's span), and the pictures
-- this batch completed (v2) or may have completed (v1: the caller checks the JPEG).
local P = ARGV[1]
local now = ARGV[2]
local mid_ttl = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local statuses, ready, seen = {}, {}, {}
local function mark(pk)
  redis.call('ZADD', P .. ':ready', now, pk)
  -- Each mark changes the picture's version, so a claimant checking an older state does not
  -- take it off the ready list (unclaim.lua).
  redis.call('HINCRBY', P .. ':touch', pk, 1)
  if not seen[pk] then
    seen[pk] = true
    ready[#ready + 1] = pk
  end
end
local function end_done(dev, e)
  return redis.call('SISMEMBER', P .. ':v1x:' .. dev, e) == 1
end
-- v1 positions: "<time, 16 digits>:<arrival, 16 hex digits>", compared as strings, so that
-- chunks and ENDs of the same millisecond are cut by arrival (as in single-instance mode).
local function pos(t, ctr)
  return string.format('%016d:%016x', tonumber(t), ctr)
end
-- The first END at or after position p, if any.
local function end_after(dev, p, inclusive)
  local lo = (inclusive and '[' or '(') .. p
  local e = redis.call('ZRANGEBYLEX', P .. ':v1e:' .. dev, lo, '+', 'LIMIT', 0, 1)
  return e[1]
end
-- Whether position p lies in a finished segment's span [first chunk, END]. A position before
-- a finished segment's first chunk (and after the END before it) belongs to a picture whose
-- END has not come yet.
local function in_finished(dev, p)
  local e = end_after(dev, p, true)
  if e == nil or not end_done(dev, e) then
    return false
  end
  local first = redis.call('HGET', P .. ':v1d:' .. dev, e)
  return first == false or p >= first
end
local n = (#ARGV - 4) / 10
for i = 0, n - 1 do
  local b = 4 + i * 10
  local kind, mid, dev = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local t = ARGV[b + 9]
  local status = 0
  if mid ~= '' and not redis.call('SET', P .. ':mid:' .. mid, '1', 'NX', 'PX', mid_ttl) then
    status = 1
  end
  if status == 0 and kind == '2' then
    local pid, seq, count, size, crc = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
    local pk = '2|' .. dev .. '|' .. pid
    local h = P .. ':pic:' .. pk
    if redis.call('EXISTS', P .. ':done:' .. pk) == 1 then
      status = 3
    else
      local hdr = redis.call('HMGET', h, 'c', 's', 'k', 't')
      if hdr[1] then
        if hdr[1] ~= count or hdr[2] ~= size or hdr[3] ~= crc then
          status = 4
        elseif tonumber(t) < tonumber(hdr[4]) then
          redis.call('HSET', h, 't', t)
        end
      else
        redis.call('HSET', h, 'c', count, 's', size, 'k', crc, 't', t, 'n', 0)
      end
      if status == 0 then
        if redis.call('HSETNX', h, 'd' .. seq, ARGV[b + 10]) == 0 then
          status = 2
        else
          -- Expiry counts from the picture's last new chunk, as in single-instance mode.
          redis.call('ZADD', P .. ':open', now, pk)
          if redis.call('HINCRBY', h, 'n', 1) == tonumber(count) then
            mark(pk)
          end
        end
      end
    end
  elseif status == 0 and kind == '1' then
    local data = ARGV[b + 10]
    local fps = P .. ':v1f:' .. dev
    local fp = t .. ':' .. redis.sha1hex(data)
    if redis.call('ZSCORE', fps, fp) then
      status = 2
    else
      local p = pos(t, redis.call('INCR', P .. ':ctr'))
      if in_finished(dev, p) then
        status = 5
      else
        redis.call('ZADD', fps, t, fp)
        redis.call('ZREMRANGEBYSCORE', fps, '-inf', '(' .. (tonumber(t) - window))
        redis.call('ZADD', P .. ':v1t:' .. dev, 0, p)
        redis.call('ZADD', P .. ':v1a:' .. dev, now, p)
        redis.call('HSET', P .. ':v1c:' .. dev, p, data)
        redis.call('ZADD', P .. ':open', 'NX', now, '1|' .. dev)
        local e = end_after(dev, p, true)
        if e ~= nil and not end_done(dev, e) then
          mark('1|' .. dev .. '|' .. e)
        end
      end
    end
  elseif status == 0 and kind == 'E' then
    -- An END is a duplicate only at an equal time.
    local times = P .. ':v1E:' .. dev
    if redis.call('HEXISTS', times, t) == 1 then
      status = 2
    else
      local p = pos(t, redis.call('INCR', P .. ':ctr'))
      if in_finished(dev, p) then
        status = 5
      else
        redis.call('HSET', times, t, p)
        redis.call('ZADD', P .. ':v1e:' .. dev, 0, p)
        redis.call('ZADD', P .. ':open', 'NX', now, '1|' .. dev)
        mark('1|' .. dev .. '|' .. p)
        local nx = end_after(dev, p, false)
        if nx ~= nil and not end_done(dev, nx) then
          mark('1|' .. dev .. '|' .. nx)
        end
      end
    end
  end
  statuses[#statuses + 1] = status
end
return { statuses, ready }
