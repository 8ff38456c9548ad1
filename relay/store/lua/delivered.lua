-- Record a successful attempt and, if it still owns its delivery, close the delivery: one round
-- trip for what most attempts are (the failure path is relay/store/deliveries.py's finish).
-- The attempt is logged either way; only the owner (see take.lua, claim.lua, and deliveries.py finish) may close it.
-- Closing: drop the lease, mark the destination "ok", clear its failure count, and forget the
-- event's envelope once every destination of the event is done ("ok" or "dead"): all_done
-- (all_done.lua) is prepended when the script is loaded.
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:inflight:<destination>   KEYS[3] relay:destination:<name>
-- KEYS[4] relay:attempt-log           KEYS[5] relay:attempts:<event id>   KEYS[6] relay:event:<event id>
-- ARGV[1] destination   ARGV[2] owner token   ARGV[3] lease member   ARGV[4] attempt log cap
-- ARGV[5] the attempt as JSON, for the event's list   ARGV[6] TTL of that list
-- ARGV[7] '1' when the delivery needed more than one try: the list gets the attempt even if it
-- has nothing yet   ARGV[8..] log field, value, ...
-- Returns {1 if it owned the delivery else 0, who paused the destination ("" if nobody)}.
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 8))
-- The event's list holds every attempt of the deliveries that did not succeed at the first try,
-- so a success goes there after a failure of the same delivery: a later attempt, or the first
-- of a replay (records are compact JSON, destination names need no escaping).
local listed = ARGV[7] == '1'
if not listed then
  local needle = '"destination":"' .. ARGV[1] .. '"'
  for _, record in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do
    if string.find(record, needle, 1, true) then
      listed = true
      break
    end
  end
end
if listed then
  redis.call('RPUSH', KEYS[5], ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[6])
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
  redis.call('DEL', KEYS[6])
end
return {1, redis.call('HGET', KEYS[3], 'paused_by') or ''}
