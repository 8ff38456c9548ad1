-- Prepended to the scripts that forget an event's envelope (delivered.lua, forget.lua).
-- True when every destination of an event is done: its delivery hash holds only "ok" and "dead"
-- (an attempt in flight adds a "<destination>:owner" field, a pending one reads "<n>.<d>").
local function all_done(delivery_key)
  for _, state in ipairs(redis.call('HVALS', delivery_key)) do
    if state ~= 'ok' and state ~= 'dead' then
      return false
    end
  end
  return true
end
