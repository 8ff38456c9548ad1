-- Accept one event atomically: queue its RQ job and claim its dedup key, or do nothing.
-- A script runs without interleaving, so concurrent identical POSTs queue exactly one job.
-- Redis does not roll back a script that fails halfway, so the dedup key is written last:
-- if any write before it fails, the key is absent and the sender's retry queues the event.
-- KEYS[1] dedup key   KEYS[2] job hash   KEYS[3] RQ queue list   KEYS[4] RQ's set of queues
-- ARGV[1] dedup window in seconds   ARGV[2] job id   ARGV[3..] job hash field, value, ...
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
-- Refuse before writing anything when a key of ours holds something else, so no orphan job is left.
local queue_type = redis.call('TYPE', KEYS[3])['ok']
local queues_type = redis.call('TYPE', KEYS[4])['ok']
if (queue_type ~= 'list' and queue_type ~= 'none') or (queues_type ~= 'set' and queues_type ~= 'none') then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' or ' .. KEYS[4] .. ' is not an RQ queue')
end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return 1
