-- Take the deliveries one destination may send now, atomically, for one worker process's lane.
-- Every worker runs this for every destination, so no process holds work another cannot take:
-- 1. Leases that ran out (their worker died mid-send) make their attempt due again, now; the
--    old attempt no longer owns the delivery, so it can record nothing but its attempt.
-- 2. While the destination is paused, due deliveries are parked, each with its envelope (a pause
--    may outlast the event's own TTL), and nothing is taken.
-- 3. A rate limit (ARGV[5] > 0) spaces sends evenly across all processes: at most one is taken
--    per interval, and the rest wait in the queue without spending an attempt. When the oldest
--    due delivery came due before this turn opened (the rate limit held it back) and ARGV[11] > 1,
--    up to ARGV[11] due deliveries are taken in this one turn, to be sent as one digest.
-- 4. Up to ARGV[3] due deliveries are taken: each must still be the attempt its state names and
--    have no lease; it gets an owner token and a lease in the in-flight set, and its envelope
--    is returned with it. A stale member (its delivery done, or moved on) is dropped.
-- The members are JSON [event id, destination, attempt, deferrals]; the delivery hash and the
-- envelope of each are found by the key prefixes in ARGV[9] and ARGV[10] (single-node Redis).
-- KEYS[1] relay:queue:<d>   KEYS[2] relay:inflight:<d>   KEYS[3] relay:destination:<d>
-- KEYS[4] relay:parked:<d>  KEYS[5] relay:rate:<d>
-- ARGV[1] destination  ARGV[2] now (unix s)  ARGV[3] free slots  ARGV[4] lease (s)
-- ARGV[5] rate interval (s, 0: none)  ARGV[6] owner token prefix  ARGV[7] TTL of delivery hashes
-- ARGV[8] at most this many reclaimed or parked per call  ARGV[9] relay:delivery: prefix
-- ARGV[10] relay:event: prefix  ARGV[11] most deliveries folded into one digest at a rate turn (1: none)
-- Returns {taken {{member, owner, envelope}, ...}, reclaimed {member, ...}, parked count,
--          missing {member, ...} (its event expired: marked dead, never sendable), ms until
--          something may be due (-1: nothing)}.
local now = tonumber(ARGV[2])
local function attempt_of(member)
  local d = cjson.decode(member)
  return d[1], string.format('%d.%d', d[3], d[4])
end

local reclaimed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[8])
for _, member in ipairs(reclaimed) do
  local id, attempt = attempt_of(member)
  redis.call('ZREM', KEYS[2], member)
  -- Only if the delivery still names this attempt: a stale lease must not strip a live owner.
  if redis.call('HGET', ARGV[9] .. id, ARGV[1]) == attempt then
    redis.call('HDEL', ARGV[9] .. id, ARGV[1] .. ':owner')
  end
  redis.call('ZADD', KEYS[1], now, member)
end

local taken, missing, parked = {}, {}, 0
local free = tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[3], 'paused') == 1 then
  free = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[8])) do
    redis.call('ZREM', KEYS[1], member)
    local id, attempt = attempt_of(member)
    if redis.call('HGET', ARGV[9] .. id, ARGV[1]) == attempt and not redis.call('ZSCORE', KEYS[2], member) then
      local envelope = redis.call('GET', ARGV[10] .. id)
      if envelope then
        local d = cjson.decode(member)
        redis.call('RPUSH', KEYS[4], cjson.encode({id, d[3], d[4], envelope}))
        parked = parked + 1
      else
        redis.call('HSET', ARGV[9] .. id, ARGV[1], 'dead')
        redis.call('EXPIRE', ARGV[9] .. id, ARGV[7])
        table.insert(missing, member)
      end
    end
  end
end

local interval = tonumber(ARGV[5])
local tat = 0
if interval > 0 and free > 0 then
  tat = tonumber(redis.call('GET', KEYS[5]) or '0')
  if tat > now then
    free = 0
  else
    free = 1
    local fold = tonumber(ARGV[11] or '1')
    if fold > 1 then
      -- Due before the turn opened: held back by the rate limit, with whatever came due since.
      local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      if head[2] and tonumber(head[2]) < tat then
        free = fold
      end
    end
  end
end

-- Stale members are dropped without counting against `free`, so a take stops only when it has
-- `free` deliveries, nothing more is due, or it has looked at ARGV[8] members.
local looked = 0
while #taken < free and looked < tonumber(ARGV[8]) do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, free - #taken)
  if #batch == 0 then
    break
  end
  for _, member in ipairs(batch) do
    looked = looked + 1
    redis.call('ZREM', KEYS[1], member)
    local id, attempt = attempt_of(member)
    local state_key = ARGV[9] .. id
    if redis.call('HGET', state_key, ARGV[1]) == attempt and not redis.call('ZSCORE', KEYS[2], member) then
      local envelope = redis.call('GET', ARGV[10] .. id)
      if envelope then
        local owner = ARGV[6] .. ':' .. looked
        redis.call('HSET', state_key, ARGV[1] .. ':owner', owner)
        redis.call('EXPIRE', state_key, ARGV[7])
        redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), member)
        table.insert(taken, {member, owner, envelope})
      else
        -- Its event expired while it waited (longer than the state TTL): it can never be sent.
        redis.call('HSET', state_key, ARGV[1], 'dead')
        redis.call('EXPIRE', state_key, ARGV[7])
        table.insert(missing, member)
      end
    end
  end
end
if interval > 0 and #taken > 0 then
  tat = math.max(tat, now) + interval
  -- Kept a while past the next turn: a lane that takes late still finds when that turn opened.
  redis.call('SET', KEYS[5], string.format('%.17g', tat), 'PX', math.ceil(interval * 1000) + 60000)
end

-- When to take again: at the next lease's end (a lost send), and, if this lane had room, when
-- the next delivery is due, but not before the rate limit's next turn. A full lane is woken by
-- its own sends' ends instead.
local wait_until = nil
local function consider(at)
  if wait_until == nil or at < wait_until then
    wait_until = at
  end
end
local lease_head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if lease_head[2] then
  consider(tonumber(lease_head[2]))
end
local queue_head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if queue_head[2] and tonumber(ARGV[3]) > 0 then
  consider(math.max(tonumber(queue_head[2]), tat))
end
local wait_ms = -1
if wait_until ~= nil then
  wait_ms = math.max(0, math.ceil((wait_until - now) * 1000))
end
return {taken, reclaimed, parked, missing, wait_ms}
