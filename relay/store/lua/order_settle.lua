-- Ordered delivery (relay/store/ordering.py): one session's events to one destination with
-- `ordered: true`, in `sequence` order. Everything that moves a session along runs here, so that
-- workers fanning out, finishing and timing one session at once never release two events at a
-- time, or none.
--
-- State, in KEYS[1] (a hash): `last`, the highest sequence released in order; `h:<seq>` -> when
-- it was held (unix ms), for each event waiting; `skipped`, the sequences given up after the gap
-- timeout ("3,5-7"); `late:<seq>` -> `last` when a late event was released out of order (said in
-- the log when its delivery ends). A held event's delivery state (relay:delivery:<event id>) is
-- "held": it counts as not done (its envelope is kept), and marks the delivery as fanned out.
--
-- The head (the lowest held sequence) is released, queued as lua/enqueue.lua queues a first
-- attempt, when `last` is done ("ok", "dead", or its state gone) and every sequence between
-- `last` and the head is accounted for: seen in the session record (KEYS[2]) and done, or given
-- up. A sequence missing from the record is a gap, waited for `gap timeout` from the arrival of
-- the earliest event still held; one seen but not routed here (no delivery state: another
-- destination's event, or one whose fan-out is still under way) is waited for `grace`. Only the
-- modes that report to a worker (end, timer) give up on either; `hold` releases only what is
-- plainly next, and sets the timer for the rest.
--
-- KEYS[1] relay:order:<destination>:<source>:<sessionId>   KEYS[2] relay:session:<source>:<sessionId>
-- KEYS[3] relay:queue:<destination>   KEYS[4] relay:due
-- ARGV[1] mode: 'hold' (fan-out: register ARGV[12] and settle), 'end' (ARGV[12]'s delivery
--   ended: settle; set the timer), 'timer' (settle; the caller sets the timer), 'flush' (the
--   destination is no longer ordered: release everything held)
-- ARGV[2] destination   ARGV[3] relay:delivery:<source>:<sessionId>:   ARGV[4] relay:event:<source>:<sessionId>:
-- ARGV[5], ARGV[6] a queue member's text before and after the sequence
-- ARGV[7] now (unix ms)   ARGV[8] gap timeout (ms)   ARGV[9] grace (ms)   ARGV[10] TTL (s)
-- ARGV[11] the session's relay:due member   ARGV[12] the sequence (hold, end) or ''
-- ARGV[13], ARGV[14] the shortest and longest re-check (ms) while an event waits for a delivery
-- ARGV[15] when what is released is due (unix s): the clock's now (ARGV[7] may be another's, in tests)
-- Returns, for 'hold': 1 (held or queued), 0 (fanned out to this destination before). Otherwise
-- {released sequences, skipped ranges ("3,5-7"), passed-over ranges, `last` when ARGV[12] was
-- late ('' if not), when to run the timer next (unix ms, -1: not needed)}.
local mode, dest = ARGV[1], ARGV[2]
local delivery_prefix, event_prefix = ARGV[3], ARGV[4]
local member_head, member_tail = ARGV[5], ARGV[6]
local now = tonumber(ARGV[7])
local gap_ms, grace_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local ttl = ARGV[10]
local timer = ARGV[11]
local recheck_min, recheck_max = tonumber(ARGV[13]), tonumber(ARGV[14])

local function fmt(n)
  return string.format('%d', n)
end

local function state_of(seq)
  return redis.call('HGET', delivery_prefix .. fmt(seq), dest)
end

local function done(state)
  return not state or state == 'ok' or state == 'dead'
end

-- Queue the first attempt of `seq`'s delivery, due now.
local function queue(seq)
  local s = fmt(seq)
  redis.call('HSET', delivery_prefix .. s, dest, '1.0')
  redis.call('EXPIRE', delivery_prefix .. s, ttl)
  redis.call('EXPIRE', event_prefix .. s, ttl) -- it may have waited long: its retries need it
  redis.call('ZADD', KEYS[3], ARGV[15], member_head .. s .. member_tail)
end

local last = nil
local held = {} -- sequence -> when it was held (ms)
local skipped_before = nil
do
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if name == 'last' then
      last = tonumber(value)
    elseif string.sub(name, 1, 2) == 'h:' then
      held[tonumber(string.sub(name, 3))] = tonumber(value)
    elseif name == 'skipped' then
      skipped_before = value
    end
  end
end

local seen = nil -- the sequences of the session record, ascending, each once
local function seen_sequences()
  if seen == nil then
    seen = {}
    local found = {}
    local record = redis.call('GET', KEYS[2]) or ''
    for s in string.gmatch('\n' .. record, '\n%[(%d+),') do
      local n = tonumber(s)
      if not found[n] then
        found[n] = true
        table.insert(seen, n)
      end
    end
    table.sort(seen)
  end
  return seen
end

local function ranges_text(ranges)
  local parts = {}
  for _, r in ipairs(ranges) do
    if r[1] == r[2] then
      table.insert(parts, fmt(r[1]))
    else
      table.insert(parts, fmt(r[1]) .. '-' .. fmt(r[2]))
    end
  end
  return table.concat(parts, ',')
end

local released, skipped, passed = {}, {}, {}

-- Release what may go now; return when to look again (ms), or nil when nothing is held.
local function settle(give_up)
  while true do
    local head, since = nil, nil
    for seq, at in pairs(held) do
      if head == nil or seq < head then
        head = seq
      end
      if since == nil or at < since then
        since = at
      end
    end
    if head == nil then
      return nil
    end
    local recheck = math.min(recheck_max, math.max(recheck_min, (now - since) / 10))
    if state_of(head) ~= 'held' then
      -- Moved on by another path (an operator, an expiry): not ours to release any more.
      redis.call('HDEL', KEYS[1], 'h:' .. fmt(head))
      held[head] = nil
    else
      local low = last or -1
      local busy = last ~= nil and not done(state_of(last))
      local unrouted, adopted = {}, nil
      local gaps, expected = {}, low + 1
      for _, seq in ipairs(seen_sequences()) do
        if seq > low and seq < head then
          local state = state_of(seq)
          if state == 'held' then
            adopted = seq -- held, but this state lost it (it expired): it waits here again
            break
          elseif not state then
            local previous = unrouted[#unrouted]
            if previous and previous[2] == seq - 1 then
              previous[2] = seq
            else
              table.insert(unrouted, {seq, seq})
            end
          elseif not done(state) then
            busy = true -- queued before the destination was ordered
          end
          if seq > expected then
            table.insert(gaps, {expected, seq - 1})
          end
          expected = seq + 1
        end
      end
      if head > expected then
        table.insert(gaps, {expected, head - 1})
      end
      if adopted ~= nil then
        held[adopted] = now
        redis.call('HSET', KEYS[1], 'h:' .. fmt(adopted), fmt(now))
      elseif busy then
        return now + recheck
      else
        local deadline = 0
        if #gaps > 0 then
          deadline = since + gap_ms
        end
        if #unrouted > 0 then
          deadline = math.max(deadline, since + grace_ms)
        end
        if deadline > now or (deadline > 0 and not give_up) then
          return math.min(math.max(deadline, now), now + recheck_max)
        end
        if #gaps > 0 then
          local text = ranges_text(gaps)
          skipped_before = skipped_before and (skipped_before .. ',' .. text) or text
          redis.call('HSET', KEYS[1], 'skipped', skipped_before)
          for _, r in ipairs(gaps) do
            table.insert(skipped, r)
          end
        end
        for _, r in ipairs(unrouted) do
          table.insert(passed, r)
        end
        queue(head)
        table.insert(released, fmt(head))
        held[head] = nil
        last = head
        redis.call('HDEL', KEYS[1], 'h:' .. fmt(head))
        redis.call('HSET', KEYS[1], 'last', fmt(head))
      end
    end
  end
end

-- Due at `at` (ms), or removed (nil); with `keep_earlier`, not later than it was (a session
-- whose events keep coming must not keep pushing its re-check away). Always a new score: a
-- timer being run then finishes without rescheduling it, as lua/done_due.lua compares the score
-- with its taker's token, and what this script saw is newer than what that run saw.
local function set_timer(at, keep_earlier)
  if at == nil then
    redis.call('ZREM', KEYS[4], timer)
    return
  end
  at = math.floor(at)
  local current = redis.call('ZSCORE', KEYS[4], timer)
  if current then
    current = tonumber(current)
    if keep_earlier and current <= at then
      at = current - 1
    elseif current == at then
      at = at + 1
    end
  end
  redis.call('ZADD', KEYS[4], fmt(at), timer)
end

if mode == 'hold' then
  local seq = tonumber(ARGV[12])
  local state_key = delivery_prefix .. ARGV[12]
  if redis.call('HSETNX', state_key, dest, 'held') == 0 then
    return 0
  end
  redis.call('EXPIRE', state_key, ttl)
  if last ~= nil and seq <= last then
    -- Later events went out already (its gap was skipped, or it was passed over): at once.
    queue(seq)
    redis.call('HSET', KEYS[1], 'late:' .. ARGV[12], fmt(last))
  else
    held[seq] = now
    redis.call('HSET', KEYS[1], 'h:' .. ARGV[12], fmt(now))
    set_timer(settle(false), true)
  end
  redis.call('EXPIRE', KEYS[1], ttl)
  return 1
end

local late = ''
if mode == 'end' and ARGV[12] ~= '' then
  late = redis.call('HGET', KEYS[1], 'late:' .. ARGV[12]) or ''
  if late ~= '' then
    redis.call('HDEL', KEYS[1], 'late:' .. ARGV[12])
  end
end

local following = nil
if mode == 'flush' then
  local order = {}
  for seq in pairs(held) do
    table.insert(order, seq)
  end
  table.sort(order)
  for _, seq in ipairs(order) do
    if state_of(seq) == 'held' then
      queue(seq)
      table.insert(released, fmt(seq))
    end
    redis.call('HDEL', KEYS[1], 'h:' .. fmt(seq))
  end
else
  following = settle(true)
  if mode == 'end' then
    set_timer(following, false)
  end
  if mode == 'timer' then
    -- Still waiting: keep its envelope and states alive as long as it waits.
    for seq in pairs(held) do
      redis.call('EXPIRE', delivery_prefix .. fmt(seq), ttl)
      redis.call('EXPIRE', event_prefix .. fmt(seq), ttl)
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return {released, ranges_text(skipped), ranges_text(passed), late, following and fmt(math.floor(following)) or '-1'}
