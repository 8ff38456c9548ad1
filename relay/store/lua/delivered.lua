-- Record a successful attempt and, if it still owns its delivery, close the delivery: one round
-- trip for what most attempts are (the failure path is relay/store/deliveries.py's finish).
-- The attempt is logged either way; only the owner (see take.lua, claim.lua, and deliveries.py finish) may close it.
-- Closing: drop the lease, mark the destination "ok", clear its failure count, and forget the
-- event's envelope once every destination of the event is done ("ok" or "dead"): all_done
-- (all_done.lua) is prepended when the script is loaded.
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:inflight:<destination>   KEYS[3] relay:destination:<name>
-- KEYS[4] relay:event:<event id>      KEYS[5] relay:event-log:<source>:<sessionId>
-- ARGV[1] destination   ARGV[2] owner token   ARGV[3] lease member
-- ARGV[4] the event's field in the event log   ARGV[5] the attempt's line ("\n" first)
-- Returns {1 if it owned the delivery else 0, who paused the destination ("" if nobody)}.
-- Only onto a record the fan-out wrote (see event_attempt.lua).
local logged = redis.call('HGET', KEYS[5], ARGV[4])
if logged then
  redis.call('HSET', KEYS[5], ARGV[4], logged .. ARGV[5])
end
if redis.call('HGET', KEYS[1], ARGV[1] .. ':owner') ~= ARGV[2] then
  return {0, ''}
end
redis.call('HDEL', KEYS[1], ARGV[1] .. ':owner')
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], 'ok')
local failures = redis.call('HGET', KEYS[3], 'failures')
if failures and failures ~= '0' then
  redis.call('HSET', KEYS[3], 'failures', '0')
end
if all_done(KEYS[1]) then
  redis.call('DEL', KEYS[4])
end
return {1, redis.call('HGET', KEYS[3], 'paused_by') or ''}
