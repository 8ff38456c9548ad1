-- Delete an event's stored envelope once every destination of it is done ("ok" or "dead"):
-- retries need it, finished deliveries do not (a dead letter keeps its own copy).
-- Uses all_done (all_done.lua).
-- KEYS[1] relay:delivery:<event id>   KEYS[2] relay:event:<event id>
-- Returns 1 if it was deleted.
if all_done(KEYS[1]) then
  return redis.call('DEL', KEYS[2])
end
return 0
