-- Log one event in the event log, once: its record in its session's hash (what `relay events
-- show` reads) and its entry in the time-ordered index (what `relay events list` scans), trimmed
-- to the retention. A fan-out read again (an entry left pending) finds the record there and logs
-- nothing twice.
-- KEYS[1] relay:event-log:<source>:<sessionId>   KEYS[2] relay:event-log
-- ARGV[1] retention in seconds   ARGV[2] the oldest index entry kept (unix ms)
-- ARGV[3] the event's field in the hash   ARGV[4] its record   ARGV[5..] the index entry's field, value, ...
if redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4]) == 0 then
  return 0
end
-- The session's records go together, `retention` after its last event was logged.
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', unpack(ARGV, 5))
return 1
