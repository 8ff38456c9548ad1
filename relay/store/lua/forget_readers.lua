-- Forget the inbox's readers that hold nothing and have been idle for long (stopped workers),
-- in one step: a reader that reads between a check and its deletion would lose its entries.
-- KEYS[1] relay:inbox   ARGV[1] the consumer group   ARGV[2] idle milliseconds   ARGV[3] the caller
-- Returns how many were forgotten.
redis.replicate_commands()  -- XINFO is non-deterministic: Redis 6.2 needs effects replication
local forgotten = 0
for _, reader in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #reader, 2 do
    fields[reader[i]] = reader[i + 1]
  end
  if fields['pending'] == 0 and fields['idle'] > tonumber(ARGV[2]) and fields['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    forgotten = forgotten + 1
  end
end
return forgotten
