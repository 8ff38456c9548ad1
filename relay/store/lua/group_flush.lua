-- Mark part ARGV[1] of a group as sent, once, and store its message's envelope: the events it
-- lists (ARGV[5..], their sequences) are no longer pending, the part number moves on. A timer run
-- twice (its first taker presumed dead) builds the same part again: the part number has moved
-- on, so nothing is written, not even the envelope, which must list exactly what was marked.
-- KEYS[1] relay:group:<destination>:<source>:<sessionId>   KEYS[2] relay:event:<message id>
-- ARGV[1] part   ARGV[2] now (unix s)   ARGV[3] the message's envelope (JSON)   ARGV[4] TTL (s)
-- ARGV[5], ARGV[6], ARGV[7] the events only counted (over:INFO, over:WARN, over:ERROR) it counts
-- ARGV[8...] the sequences of the events the message lists or counts
-- Returns {1 marked now | 0 marked before, events still pending, when the last message was sent
-- (unix s, '' if never)}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0, ''}
end
local pending = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local part = tonumber(redis.call('HGET', KEYS[1], 'part') or '1')
if part ~= tonumber(ARGV[1]) then
  return {0, pending, redis.call('HGET', KEYS[1], 'sent') or ''}
end
for i, severity in ipairs({'INFO', 'WARN', 'ERROR'}) do
  local counted = tonumber(ARGV[4 + i])
  if counted > 0 then
    redis.call('HINCRBY', KEYS[1], 'over:' .. severity, -counted)
    pending = pending - counted
  end
end
for i = 8, #ARGV do
  if redis.call('HDEL', KEYS[1], 'q:' .. ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], 's:' .. ARGV[i], ARGV[1])
    pending = pending - 1
  end
end
redis.call('HSET', KEYS[1], 'part', part + 1, 'n', pending, 'sent', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
return {1, pending, ARGV[2]}
