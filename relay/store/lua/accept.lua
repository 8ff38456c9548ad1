-- Accept one event atomically: append it to the inbox stream and claim its dedup key, or do nothing.
-- A script runs without interleaving, so concurrent identical POSTs add exactly one entry.
-- Redis does not roll back a script that fails halfway, so the dedup key is written last:
-- if the XADD fails (say, relay:inbox holds something else), the key is absent and the sender's
-- retry is accepted once the fault is fixed. Either way the minute's count of its result goes up
-- (relay/store/stats.py), in the round trip made anyway.
-- KEYS[1] dedup key   KEYS[2] relay:inbox   KEYS[3] relay:stats:<minute>
-- ARGV[1] dedup window in seconds   ARGV[2..6] the envelope's v, id, source, received_at, body
-- ARGV[7] the count's field without its result ("in|<source>|")   ARGV[8] how long counts are kept
-- (the field names are written here, not sent with every request: fewer arguments to pack)
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[7] .. 'duplicate', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[8])
  return 0
end
redis.call('XADD', KEYS[2], '*', 'v', ARGV[2], 'id', ARGV[3], 'source', ARGV[4], 'received_at', ARGV[5],
  'body', ARGV[6])
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[7] .. 'accepted', 1)
redis.call('EXPIRE', KEYS[3], ARGV[8])
return 1
