-- Queue an event's first attempt to one destination, once: the fan-out of an event read twice
-- (an inbox entry read again, or taken over from a reader that seemed dead) finds the delivery's
-- state and queues nothing.
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:queue:<destination>
-- ARGV[1] destination   ARGV[2] queue member   ARGV[3] when it is due (unix s)   ARGV[4] TTL of
-- the delivery hash
-- Returns 1 when queued, 0 when the delivery already existed.
if redis.call('HSETNX', KEYS[1], ARGV[1], '1.0') == 0 then
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
