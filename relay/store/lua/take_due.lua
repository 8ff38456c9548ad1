-- Take the timers that are due (relay:due: probes, dead-letter expiry, ...), atomically: each
-- taken member's score moves to the end of the taker's lease, which is also its token. A taker
-- that dies leaves the member due again at that time, for any worker to take; one that finishes
-- reschedules or removes it only if the token is still its own (done_due.lua).
-- KEYS[1] relay:due   ARGV[1] now (unix ms, integer)   ARGV[2] at most this many   ARGV[3] lease (ms)
-- Returns {{member, ...}, token}.
local token = tonumber(ARGV[1]) + tonumber(ARGV[3])
local taken = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(taken) do
  redis.call('ZADD', KEYS[1], 'XX', token, member)
end
return {taken, string.format('%d', token)}
