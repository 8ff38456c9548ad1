-- Add one matched event to its session's pending group for one destination, once, and set the
-- group's timer when the event opens the next message: its first at `group_wait` after this
-- match; a follow-up at the previous message's time + `group_interval` (or `group_wait` after
-- this match, once that interval has passed). The timer is set (not kept) then: a run of it
-- that found nothing pending must not remove it (done_due.lua sees its token changed).
-- KEYS[1] relay:group:<destination>:<source>:<sessionId>   KEYS[2] relay:due
-- ARGV[1] sequence   ARGV[2] the event as the message lists it (JSON)   ARGV[3] its severity
-- ARGV[4] the rule   ARGV[5] now (unix s)   ARGV[6] group_wait (s)   ARGV[7] group_interval (s)
-- ARGV[8] the timer's member   ARGV[9] most events listed in one message   ARGV[10] TTL (s)
-- ARGV[11] most fields in the hash: past it an event is only counted, by severity ('over:<S>'),
-- so that a session sent any number of events keeps a bounded group (and may count one twice)
-- Returns 1 when added, 0 when the event was in the group already (fanned out twice).
local pending_field, sent_field = 'q:' .. ARGV[1], 's:' .. ARGV[1]
if redis.call('HEXISTS', KEYS[1], pending_field) == 1 or redis.call('HEXISTS', KEYS[1], sent_field) == 1 then
  return 0
end
local pending = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[11]) then
  redis.call('HINCRBY', KEYS[1], 'over:' .. ARGV[3], 1)
elseif pending < tonumber(ARGV[9]) then
  redis.call('HSET', KEYS[1], pending_field, ARGV[2])
else
  -- Past the cap only its severity is kept: the message counts it, and its severity counts.
  redis.call('HSET', KEYS[1], pending_field, ARGV[3])
end
redis.call('HSET', KEYS[1], 'n', pending + 1, 'interval', ARGV[7])
if pending == 0 then
  redis.call('HSET', KEYS[1], 'rule', ARGV[4])
  local now = tonumber(ARGV[5])
  local at = now + tonumber(ARGV[6])
  local sent = redis.call('HGET', KEYS[1], 'sent')
  if sent and tonumber(sent) + tonumber(ARGV[7]) > now then
    at = tonumber(sent) + tonumber(ARGV[7])
  end
  redis.call('ZADD', KEYS[2], string.format('%d', math.floor(at * 1000)), ARGV[8])
end
redis.call('EXPIRE', KEYS[1], ARGV[10])
return 1
