-- Mark a session's outcome as emitted, once: a timer run twice (its first taker presumed dead)
-- finds the mark and emits nothing more. The record is written anew rather than appended to:
-- APPEND leaves up to as much room again for the next line, and a finished session is kept for
-- days with few or no lines more.
-- KEYS[1] relay:session:<source>:<sessionId>
-- The mark goes where the record ended when the outcome was decided: events tracked since then
-- come after it, so they count as late, not as part of the outcome they did not decide.
-- ARGV[1] the final line (JSON ["F", {...}] and a newline)   ARGV[2] the record's TTL (s)
-- ARGV[3] the record's length when the outcome was decided
-- Returns 1 when marked now, 0 when the outcome was emitted before or the record is gone.
local record = redis.call('GET', KEYS[1])
if not record then
  return 0
end
-- Every line is a JSON array without a line break inside: '["F",' can only begin a line.
if string.sub(record, 1, 5) == '["F",' or string.find(record, '\n["F",', 1, true) then
  return 0
end
local at = math.min(tonumber(ARGV[3]), #record)
redis.call('SET', KEYS[1], string.sub(record, 1, at) .. ARGV[1] .. string.sub(record, at + 1), 'EX', ARGV[2])
return 1
