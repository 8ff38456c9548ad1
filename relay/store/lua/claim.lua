-- Claim a parked delivery for a probe of its paused destination, which sends it although the
-- destination is paused, atomically. The delivery's state must name exactly this attempt and
-- deferral ("3.1"), or have expired; a state that moved on (done, or another attempt) makes the
-- entry a stale copy, removed. One already in flight is not sent twice. The claim restores the
-- event if it expired meanwhile (the entry carries it: a pause may outlast the event's TTL) and
-- takes the lease (relay:inflight:<d>) and an owner token, which lets only this attempt record
-- its outcome (delivered.lua, relay/store/deliveries.py finish).
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:inflight:<destination>   KEYS[3] relay:event:<event id>
-- KEYS[4] relay:parked:<destination>
-- ARGV[1] destination   ARGV[2] attempt "n.d"   ARGV[3] lease member   ARGV[4] lease expiry (unix s)
-- ARGV[5] TTL of the delivery hash and the event   ARGV[6] owner token   ARGV[7] the envelope (JSON)
-- ARGV[8] the parked entry
-- Returns 1: claimed, send it; 0: in flight already; -1: stale, removed.
local state = redis.call('HGET', KEYS[1], ARGV[1])
if state and state ~= ARGV[2] then
  redis.call('LREM', KEYS[4], 1, ARGV[8])
  return -1
end
if redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], ARGV[7], 'EX', ARGV[5])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. ':owner', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return 1
