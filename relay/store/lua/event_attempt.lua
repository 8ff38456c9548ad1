-- Add an attempt's line to its event's record in the event log, if the event is logged (a record
-- without its header would be unreadable). The hash keeps its expiry.
-- KEYS[1] relay:event-log:<source>:<sessionId>   ARGV[1] the event's field   ARGV[2] the line, "\n" first
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record then
  redis.call('HSET', KEYS[1], ARGV[1], record .. ARGV[2])
  return 1
end
return 0
