-- Release up to ARGV[2] deliveries parked for a destination back into its queue, due now, in one
-- step: read and removed together, so that two releasers (a resume and the expiry timer, say)
-- never take the same entries, nor cut off entries pushed meanwhile. An entry is restored only if
-- its delivery still names that attempt (or its state expired), and is not in flight (a probe
-- is sending it); otherwise it is a stale copy and dropped. An entry without its event (its
-- envelope had expired when it was parked) cannot be sent: its delivery is marked dead.
-- Entries are JSON [event id, attempt, deferrals, envelope]; the queue member is built as Python's
-- json.dumps builds it (relay/store/queues.py member): cjson escapes '/', json.dumps does not.
-- KEYS[1] relay:parked:<d>   KEYS[2] relay:queue:<d>   KEYS[3] relay:inflight:<d>
-- ARGV[1] destination   ARGV[2] at most this many   ARGV[3] now (unix s)   ARGV[4] TTL of states
-- ARGV[5] relay:delivery: prefix   ARGV[6] relay:event: prefix
-- Returns {released, {"<event id> <attempt>: <why dropped>", ...}}.
local function js(s)
  return (string.gsub(cjson.encode(s), '\\/', '/'))
end
local entries = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
-- Decoded before anything is written: an entry that does not decode fails the script whole, with
-- the list untouched (Redis does not roll back a script that fails halfway).
local decoded = {}
for i, entry in ipairs(entries) do
  decoded[i] = cjson.decode(entry)
end
redis.call('LTRIM', KEYS[1], #entries, -1)
local released, dropped = 0, {}
for _, p in ipairs(decoded) do
  local id, number, deferrals, envelope = p[1], p[2], p[3], p[4]
  local attempt = string.format('%d.%d', number, deferrals)
  local member = '[' .. js(id) .. ', ' .. js(ARGV[1]) .. ', ' .. string.format('%d, %d', number, deferrals) .. ']'
  local state_key = ARGV[5] .. id
  local state = redis.call('HGET', state_key, ARGV[1])
  if state and state ~= attempt then
    table.insert(dropped, id .. ' ' .. attempt .. ': already ' .. state)
  elseif redis.call('ZSCORE', KEYS[3], member) then
    table.insert(dropped, id .. ' ' .. attempt .. ': in flight (a probe)')
  elseif type(envelope) ~= 'string' then
    redis.call('HSET', state_key, ARGV[1], 'dead')
    redis.call('EXPIRE', state_key, ARGV[4])
    table.insert(dropped, id .. ' ' .. attempt .. ': the event is no longer stored; marked dead')
  else
    if redis.call('EXISTS', ARGV[6] .. id) == 0 then
      redis.call('SET', ARGV[6] .. id, envelope, 'EX', ARGV[4])
    end
    redis.call('HSET', state_key, ARGV[1], attempt)
    redis.call('EXPIRE', state_key, ARGV[4])
    redis.call('ZADD', KEYS[2], ARGV[3], member)
    released = released + 1
  end
end
return {released, dropped}
