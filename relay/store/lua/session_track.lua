-- Track one accepted event in its session's record, in one step: append its line, keep the
-- record its retention, move the session up the index (never down: an entry read again later
-- is not the session's latest), and set the session's timer to `settle` after it.
-- A record is capped (MAX bytes): past it only the events that decide an outcome are appended
-- (up to twice the cap), so that one session, however many events it is sent, stays bounded and
-- its outcome stays right. A measurementId already in the record is not written again.
-- KEYS[1] relay:session:<source>:<sessionId>   KEYS[2] relay:sessions   KEYS[3] relay:due
-- ARGV[1] the line, measurementId included   ARGV[2] the line without it   ARGV[3] the
-- measurementId as JSON ('' for none)   ARGV[4] retention (s)   ARGV[5] index member
-- ARGV[6] when accepted (unix s)   ARGV[7] the timer's member   ARGV[8] when the timer is due (ms)
-- ARGV[9] the record's cap (bytes)   ARGV[10] '1' when the event decides outcomes
-- Returns 1 when the line was appended, 0 when the record was full.
local size = redis.call('STRLEN', KEYS[1])
local cap = tonumber(ARGV[9])
local appended = 0
if size < cap or (ARGV[10] == '1' and size < 2 * cap) then
  local line = ARGV[1]
  if ARGV[3] ~= '' and size > 0 and string.find(redis.call('GET', KEYS[1]), ARGV[3], 1, true) then
    line = ARGV[2]
  end
  redis.call('APPEND', KEYS[1], line)
  appended = 1
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], 'GT', ARGV[6], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[7])
return appended
