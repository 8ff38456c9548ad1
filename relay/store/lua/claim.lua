-- Claim one attempt outside the destination's queue, atomically: a probe of a paused
-- destination, which sends its oldest parked delivery although the destination is paused.
-- The delivery's state must name exactly this attempt and deferral ("3.1") and have no live
-- lease: a stale or duplicate probe sends nothing. The lease (in relay:inflight:<d>) says when
-- the attempt is presumed lost; the owner token lets only this attempt record its outcome
-- (release.lua, delivered.lua).
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:inflight:<destination>
-- ARGV[1] destination   ARGV[2] attempt "n.d"   ARGV[3] lease member   ARGV[4] lease expiry (unix s)
-- ARGV[5] TTL of the delivery hash    ARGV[6] owner token
-- Returns 1: claimed, send it; 0: not ours.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] or redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':owner', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return 1
