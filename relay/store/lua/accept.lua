-- Accept one event atomically: append it to the inbox stream and claim its dedup key, or do nothing.
-- A script runs without interleaving, so concurrent identical POSTs add exactly one entry.
-- Redis does not roll back a script that fails halfway, so the dedup key is written last:
-- if the XADD fails (say, relay:inbox holds something else), the key is absent and the sender's
-- retry is accepted once the fault is fixed.
-- KEYS[1] dedup key   KEYS[2] relay:inbox
-- ARGV[1] dedup window in seconds   ARGV[2..6] the envelope's v, id, source, received_at, body
-- (the field names are written here, not sent with every request: fewer arguments to pack)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('XADD', KEYS[2], '*', 'v', ARGV[2], 'id', ARGV[3], 'source', ARGV[4], 'received_at', ARGV[5],
  'body', ARGV[6])
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
