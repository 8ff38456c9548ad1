-- Claim the right to make one delivery attempt, atomically, then either take a lease on it or,
-- when its destination is paused, park it.
-- A fresh claim (the fan-out job) needs no state yet: a second run of the same job finds the
-- state and sends nothing. A continuing claim (a retry, a released or swept-up attempt) needs
-- the state to name exactly this attempt and no live lease on it: a stale or duplicate retry job
-- sends nothing. The lease says when this attempt is presumed lost if it never finishes.
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:leases
-- KEYS[3] relay:destination:<name>    KEYS[4] relay:parked:<name>
-- ARGV[1] destination   ARGV[2] attempt number   ARGV[3] lease member   ARGV[4] lease expiry (unix s)
-- ARGV[5] TTL of the delivery hash   ARGV[6] 'fresh' or 'continue'   ARGV[7] parked entry
-- ARGV[8] '1' for a probe, which is sent although the destination is paused
-- Returns 0: not ours; 1: claimed, send it; 2: claimed and parked.
local state = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[6] == 'fresh' then
  if state then return 0 end
elseif state ~= ARGV[2] or redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[8] ~= '1' and redis.call('HEXISTS', KEYS[3], 'paused') == 1 then
  redis.call('RPUSH', KEYS[4], ARGV[7])
  return 2
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return 1
