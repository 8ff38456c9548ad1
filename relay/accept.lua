-- Accept one event atomically: claim its dedup key and queue its RQ job, or do nothing.
-- Running as one script is what makes "key set but job missing" impossible, and makes
-- concurrent identical POSTs queue exactly one job.
-- KEYS[1] dedup key   KEYS[2] job hash   KEYS[3] RQ queue list   KEYS[4] RQ's set of queues
-- ARGV[1] dedup window in seconds   ARGV[2] job id   ARGV[3..] job hash field, value, ...
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], KEYS[3])
return 1
