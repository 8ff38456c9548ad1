-- Claim the right to make one delivery attempt, atomically, then either take a lease on it or,
-- when its destination is paused, park it.
-- A fresh claim (the fan-out) needs no state yet: an event fanned out a second time (an inbox
-- entry read again) finds the state and sends nothing. A continuing claim (a retry, a released or swept-up attempt) needs the
-- state to name exactly this attempt and deferral ("3.1") and no live lease on it: a stale or
-- duplicate job sends nothing. The lease says when the attempt is presumed lost; the owner token
-- lets only this attempt record its outcome (relay/store/lua/release.lua).
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:leases   KEYS[3] relay:destination:<name>
-- KEYS[4] relay:parked:<name>         KEYS[5] relay:event:<event id>
-- ARGV[1] destination   ARGV[2] attempt "n.d"   ARGV[3] lease member   ARGV[4] lease expiry (unix s)
-- ARGV[5] TTL of the delivery hash    ARGV[6] 'fresh' or 'continue'     ARGV[7] '1' for a probe,
-- which is sent although the destination is paused   ARGV[8] owner token   ARGV[9] event id
-- Returns 0: not ours; 1: claimed, send it; 2: claimed and parked.
local state = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[6] == 'fresh' then
  if state then return 0 end
elseif state ~= ARGV[2] or redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[7] ~= '1' and redis.call('HEXISTS', KEYS[3], 'paused') == 1 then
  -- The entry carries the envelope: a pause may outlast the event's own TTL.
  local n, d = string.match(ARGV[2], '^(%d+)%.(%d+)$')
  redis.call('RPUSH', KEYS[4], cjson.encode({ARGV[9], tonumber(n), tonumber(d), redis.call('GET', KEYS[5])}))
  return 2
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':owner', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return 1
