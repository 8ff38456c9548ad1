-- Log one event in the event log, once: its record in its session's hash (what `relay events
-- show` reads) and its entry in the time-ordered index (what `relay events list` scans), trimmed
-- to the retention. A fan-out read again (an entry left pending) finds the record there and logs
-- nothing twice. A session's hash holds at most ARGV[5] events: past that, a session (a sender
-- that never ends one) gets neither records nor index entries, so no one key grows without end
-- (the session's own record says what it holds: relay/domain/session.py).
-- KEYS[1] relay:event-log:<source>:<sessionId>   KEYS[2] relay:event-log
-- ARGV[1] retention in seconds   ARGV[2] the oldest index entry kept (unix ms)
-- ARGV[3] the event's field in the hash   ARGV[4] its record   ARGV[5] the most events a session's hash holds
-- ARGV[6..] the index entry's field, value, ...
-- Returns 1 when logged, 0 when it was logged before, 2 when the session's hash is full.
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return 2
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
-- The session's records go together, `retention` after its last event was logged.
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', unpack(ARGV, 6))
return 1
