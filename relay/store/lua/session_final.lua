-- Mark a session's outcome as emitted, once: a timer run twice (its first taker presumed dead)
-- finds the mark and emits nothing more.
-- KEYS[1] relay:session:<source>:<sessionId>
-- ARGV[1] the final line (JSON ["F", {...}] and a newline)   ARGV[2] the record's TTL (s)
-- Returns 1 when marked now, 0 when the outcome was emitted before or the record is gone.
local record = redis.call('GET', KEYS[1])
if not record then
  return 0
end
-- Every line is a JSON array without a line break inside: '["F",' can only begin a line.
if string.sub(record, 1, 5) == '["F",' or string.find(record, '\n["F",', 1, true) then
  return 0
end
redis.call('APPEND', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
