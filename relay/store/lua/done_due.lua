-- Finish a taken timer (take_due.lua): schedule its next run at ARGV[3] (unix ms), or remove it
-- when ARGV[3] is empty; only while the token is still the taker's own.
-- KEYS[1] relay:due   ARGV[1] member   ARGV[2] token   ARGV[3] next run (unix ms) or ''
-- Returns 1 when done, 0 when the timer was taken over or changed meanwhile.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
