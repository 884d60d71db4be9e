"""The Lua scripts of the Redis rate budget: reserve a send time, settle tokens, pause.

Each runs atomically in Redis (``EVALSHA``), so every process sharing a budget
sees one schedule. Times are milliseconds on Redis' own clock (``TIME``), so
the clocks of the processes never matter; a test may pass its own ``now``
(milliseconds, > 0) instead. State is stored as ``"%.3f"`` strings (Lua numbers
are doubles; Redis would cut a returned double to an integer), and the wait is
returned as whole microseconds.

The schedule is GCRA, the generic cell rate algorithm in its "virtual
scheduling" form (ITU-T I.371; as in redis-cell, https://github.com/brandur/redis-cell,
and https://brandur.org/rate-limiting): one number per limit, the theoretical
arrival time (TAT) at which the limit's bucket would be empty. A leaky bucket
of ``room`` requests draining one per ``interval`` admits a request at time S
when ``TAT - S <= (room - 1) * interval``; admitting it moves the TAT to
``max(TAT, S) + interval``. Tokens are the same with a weighted cost (``tokens
/ rate``) and a depth (the bucket's capacity in milliseconds): a charge fits at
S when ``TAT - S + cost <= depth``. A charge larger than the depth fits once
the bucket has drained far enough, as the in-memory bucket's pieces do.

Unlike redis-cell, a refused request is not sent back to poll: the script
reserves the earliest send time S that fits every limit (and the shared
pause), returns ``S - now``, and the client sleeps that long and sends. One
round-trip per request, and callers across processes are served in the order
their reservations reached Redis: S is never before a send already reserved,
so a refund (which lowers the tokens TAT) speeds up the calls that come
next, and does not slip a new call in among those already waiting.

Each request is also booked in a log of the provider's window (a sorted set of
send times, and a hash of their tokens), as in memory
(:mod:`lc_async_pipelines.runner.limits._window`): its send time is put back
until the requests and tokens sent within one window before it fit a window's
limits. A client that sent its request later than reserved says so with its
next reservation, which moves that booking to when it went.
"""

from __future__ import annotations

__all__ = ["ADJUST", "PAUSE", "PRESENCE", "RESERVE"]

_NOW = """
local function clock(override)
  local now = tonumber(override)
  if now and now > 0 then return now end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function store(key, value, now, keep_ms)
  redis.call('SET', key, string.format('%.3f', value), 'PX',
             math.max(1, math.ceil(value - now + keep_ms)))
end
"""

# KEYS: 1 requests TAT, 2 tokens TAT, 3 pause (resume at), 4 latest send reserved,
#       5 window (sorted set: booking -> send ms), 6 window tokens (hash: booking -> tokens),
#       7 last booking number
# ARGV: 1 request interval ms (0: no RPM limit), 2 room in requests,
#       3 charge in tokens, 4 tokens per ms (0: no TPM limit), 5 token depth ms,
#       6 requests floor, 7 tokens floor (TATs this client last saw, ms; 0: none),
#       8 now override ms (0: Redis TIME), 9 ms an idle key is kept,
#       10 requests a window admits, 11 tokens a window admits (0 or absent: no
#       window log), 12 window span ms, 13 this client's last booking,
#       14 ms it went later than reserved (0: on time)
# Returns {wait in microseconds, requests TAT, tokens TAT, booking} (TATs as
# strings; booking 0: no window log).
RESERVE = (
    _NOW
    + """
local now = clock(ARGV[8])
local keep = tonumber(ARGV[9])
local send = now
local pause = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if pause > send then send = pause end
-- First come, first served: never before a send already reserved. A refund
-- lowers the tokens TAT; without this, a new call could slip in between calls
-- reserved before it and crowd them.
local latest = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
if latest > send then send = latest end

local interval = tonumber(ARGV[1])
local room = tonumber(ARGV[2])
local rtat = nil
if interval > 0 then
  rtat = tonumber(redis.call('GET', KEYS[1]) or '')
  if rtat == nil then
    -- A new (or lost) schedule is primed with one request, so it starts with
    -- no burst, and never earlier than the schedule this client last saw.
    rtat = math.max(now + interval, tonumber(ARGV[6]) or 0)
  end
  send = math.max(send, rtat - (room - 1) * interval)
end

local rate = tonumber(ARGV[4])
local ttat = nil
local cost = 0
if rate > 0 then
  local depth = tonumber(ARGV[5])
  cost = tonumber(ARGV[3]) / rate
  ttat = tonumber(redis.call('GET', KEYS[2]) or '')
  if ttat == nil then
    -- A new (or lost) bucket starts full: no burst at the start.
    ttat = math.max(now + depth, tonumber(ARGV[7]) or 0)
  end
  send = math.max(send, ttat + cost - depth)
end

-- A pause (a 429, or a limit a response said is spent) ends with the buckets
-- full, as they were: the provider's window reset then, and a burst of what
-- drained meanwhile would land in it on top of the paced requests.
if pause > now then
  if rtat ~= nil then rtat = math.max(rtat, pause + interval) end
  if ttat ~= nil then ttat = math.max(ttat, pause + tonumber(ARGV[5])) end
  if ttat ~= nil then send = math.max(send, ttat + cost - tonumber(ARGV[5])) end
  if rtat ~= nil then send = math.max(send, rtat - (room - 1) * interval) end
end

-- The provider's window (see _window.py): not before the requests and tokens
-- sent within a window before it, itself included, fit a window's limits.
local booking = 0
local wreq = tonumber(ARGV[10] or '0') or 0
local wtok = tonumber(ARGV[11] or '0') or 0
if wreq > 0 or wtok > 0 then
  local span = tonumber(ARGV[12])
  local late = tonumber(ARGV[14] or '0') or 0
  if late > 0 then
    -- the request booked last by this client went this late: counted when it went
    local at = tonumber(redis.call('ZSCORE', KEYS[5], ARGV[13]) or '')
    if at then redis.call('ZADD', KEYS[5], at + late, ARGV[13]) end
  end
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - span)
  if #old > 0 then
    redis.call('ZREM', KEYS[5], unpack(old))
    redis.call('HDEL', KEYS[6], unpack(old))
  end
  local entries = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '+inf', 'WITHSCORES')
  local count = #entries / 2
  local held = 0
  local amounts = {}
  if count > 0 then
    local ids = {}
    for i = 1, count do ids[i] = entries[2 * i - 1] end
    local values = redis.call('HMGET', KEYS[6], unpack(ids))
    for i = 1, count do
      amounts[i] = tonumber(values[i]) or 0
      held = held + amounts[i]
    end
  end
  local charge = 0
  if wtok > 0 then charge = tonumber(ARGV[3]) end
  for i = 1, count do
    local at = tonumber(entries[2 * i])
    local fits = (wreq <= 0 or count - i + 2 <= wreq * (1 + 1e-9))
      and (wtok <= 0 or held + charge <= wtok * (1 + 1e-9))
    if at > send - span and fits then break end
    if at > send - span then send = at + span end
    held = held - amounts[i]
  end
  booking = redis.call('INCR', KEYS[7])
  redis.call('ZADD', KEYS[5], send, booking)
  redis.call('HSET', KEYS[6], booking, string.format('%.3f', charge))
  local ttl = math.max(1, math.ceil(send - now + span + keep))
  for k = 5, 7 do redis.call('PEXPIRE', KEYS[k], ttl) end
end

if rtat ~= nil then
  rtat = math.max(rtat, send) + interval
  store(KEYS[1], rtat, now, keep)
end
if ttat ~= nil then
  ttat = math.max(ttat, send) + cost
  store(KEYS[2], ttat, now, keep)
end
store(KEYS[4], send, now, keep)
return {math.floor((send - now) * 1000 + 0.5),
        string.format('%.3f', rtat or 0), string.format('%.3f', ttat or 0), booking}
"""
)

# KEYS: 1 tokens TAT, 2 window tokens (as RESERVE's 6)
# ARGV: 1 tokens to charge (> 0) or refund (< 0), 2 tokens per ms, 3 token depth ms,
#       4 now override ms (0: Redis TIME), 5 ms an idle key is kept,
#       6 the call's booking (0 or absent: none), whose window tokens move likewise
# Returns the tokens TAT (string). A refund never takes the bucket, nor a
# booking, below empty.
ADJUST = (
    _NOW
    + """
local now = clock(ARGV[4])
local booking = ARGV[6]
if booking and booking ~= '0' then
  local held = tonumber(redis.call('HGET', KEYS[2], booking) or '')
  if held then
    redis.call('HSET', KEYS[2], booking,
               string.format('%.3f', math.max(0, held + tonumber(ARGV[1]))))
  end
end
local cost = tonumber(ARGV[1]) / tonumber(ARGV[2])
local ttat = tonumber(redis.call('GET', KEYS[1]) or '')
if ttat == nil then ttat = now + tonumber(ARGV[3]) end
if cost >= 0 then
  ttat = math.max(ttat, now) + cost
else
  ttat = math.max(now, ttat + cost)
end
store(KEYS[1], ttat, now, tonumber(ARGV[5]))
return string.format('%.3f', ttat)
"""
)

# KEYS: 1 pause (resume at)
# ARGV: 1 pause ms from now, 2 now override ms (0: Redis TIME)
# Returns the resume time (string); a shorter pause never cuts a longer one.
PAUSE = (
    _NOW
    + """
local now = clock(ARGV[2])
local resume = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') or 0,
                        now + tonumber(ARGV[1]))
store(KEYS[1], resume, now, 1000)
return string.format('%.3f', resume)
"""
)

# KEYS: 1 runs (sorted set: "run id|rpm|tpm" -> last seen ms)
# ARGV: 1 this run's member, 2 ms after which a run not seen again is gone,
#       3 now override ms (0: Redis TIME)
# Returns the members seen within ARGV[2], this run's included.
PRESENCE = (
    _NOW
    + """
local now = clock(ARGV[3])
local stale = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale)
redis.call('PEXPIRE', KEYS[1], math.ceil(stale))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)
