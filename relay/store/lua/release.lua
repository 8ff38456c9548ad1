-- Give up the lease of a finished attempt, if it is still this attempt's: a lane (take.lua) may have
-- presumed it lost (a send that outlasted its lease) and handed the delivery to another attempt,
-- which then owns its state. Only the owner may decide what follows.
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:inflight:<destination>
-- ARGV[1] destination   ARGV[2] owner token   ARGV[3] lease member
-- Returns 1 when this attempt still owned the delivery (its lease is now gone), else 0.
if redis.call('HGET', KEYS[1], ARGV[1] .. ':owner') ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1] .. ':owner')
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
