"""The Redis layout: every key the relay writes is named here (RQ keeps its own `rq:` keys).

- relay:inbox                   stream  accepted events not yet fanned out, one entry each: fields
                                        v, id, source, received_at, body (relay/store/inbox.py); read
                                        through the consumer group `fanout`, deleted once their
                                        deliveries are claimed
- relay:dedup:<event id>        string  "1": the event id was seen; expires after the dedup window
- relay:event:<event id>        string  the envelope (raw body included), for retries; deleted once
                                        every destination has it, else expires when no retry can
                                        need it any more
- relay:delivery:<event id>     hash    destination -> its delivery's state: the attempt number in
                                        flight or scheduled ("1.0", "2.0", ...), "ok" or "dead", or
                                        "held" (an ordered destination's, waiting for earlier events);
                                        "<destination>:owner" -> the token of the attempt in flight
- relay:queue:<name>            zset    one destination's deliveries waiting to be sent: JSON
                                        [event id, destination, attempt, deferrals], scored by when
                                        each is due (unix s): now for a first attempt, later for a
                                        retry or a rate-capped replay (relay/store/queues.py)
- relay:inflight:<name>         zset    the same members while they are being sent, scored by when
                                        they are presumed lost (their worker died): then they are due
                                        again (lua/take.lua)
- relay:rate:<name>             string  when a rate-limited destination may be sent to next (unix s)
- relay:due                     zset    timers any worker may run: JSON ["probe", name],
                                        ["expire-dead-letters"], ["session", source, sessionId],
                                        ...; scored by when due (unix ms); while
                                        one runs, by when its taker is presumed dead (relay/store/due.py)
- relay:attempts:<event id>     list    written by versions before the event log: the attempts of the
                                        event's deliveries that did not succeed at once; read only
                                        for the dead letters those versions made (expires in 14 days)
- relay:event-log                stream  the event log's index: an entry per event accepted (and
                                        derived), fields id, code, mid (measurementId), to
                                        (destinations, comma-separated); the entry id is when it was
                                        fanned out; trimmed to `event_log.retention` (relay/store/event_log.py)
- relay:event-log:<source>:<sessionId>  hash  the event log's records of a session's events, by
                                        sequence (or `session`, `group:<destination>:part-<n>`): a
                                        JSON line [received at, rules fired, destinations, grouped
                                        destinations, body length], the body, then a line per
                                        attempt [destination, attempt, outcome, status, ms, at,
                                        retry in, detail]; expires `event_log.retention` after the
                                        session's last event
- relay:stats:<minute>          hash    counts of one minute (unix time // 60) for `relay stats`:
                                        in|<source>|<result>, out|<destination>|<ok or failed>,
                                        ms|<destination>|<bound>; expires after a day (relay/store/stats.py)
- relay:dead-letter:<destination>:<event id>  string  JSON: the envelope, why it failed, how often
- relay:dead-letters            zset    "<destination>:<event id>" scored by the time it died
- relay:destination:<name>      hash    failures (consecutive), and while paused: paused (reason),
                                        paused_at, paused_by ("auto" or "operator")
- relay:parked:<name>           list    JSON [event id, attempt, deferrals, envelope] of deliveries waiting
                                        for a paused destination, oldest first
- relay:session:<source>:<sessionId>  string  one session's record: a line per event tracked
                                        (JSON [sequence, received ms, code, severity, timestamp,
                                        measurementId, key payload]) and, once its outcome was
                                        emitted, a line ["F", {...}] (relay/store/sessions.py);
                                        expires `sessions.retention` after its last event
- relay:sessions                zset    "<source>:<sessionId>" scored by its last event (unix s):
                                        the sessions to list, trimmed to `sessions.retention`
- relay:group:<destination>:<source>:<sessionId>  hash  one session's grouped message for one
                                        destination (rules with group_by): q:<sequence> -> a pending
                                        event (JSON, or only its severity past the cap), s:<sequence>
                                        -> the part it was sent in; part (the next message's number),
                                        n (pending), rule, interval, sent (unix s) (relay/store/groups.py)
- relay:order:<destination>:<source>:<sessionId>  hash  one session's ordered delivery to one
                                        destination with `ordered: true` (relay/store/ordering.py):
                                        last (the highest sequence sent in order), h:<sequence> -> when
                                        an event waiting for the ones before it was held (unix ms),
                                        skipped (the sequences given up after gap_timeout, "3,5-7"),
                                        late:<sequence> (one that arrived after later ones were sent);
                                        expires `state_ttl` after its last change
- relay:workers                 hash    worker id (host:pid) -> JSON {host, pid, started, seen, until,
                                        left}: each worker process's last heartbeat and until when it
                                        counts as running; kept a day after it was last seen
                                        (relay/store/presence.py)
- relay:metrics:attempts        hash    "<destination>|<outcome>" -> attempts sent, counted by the
                                        workers for GET /metrics (relay/store/metrics.py)
- relay:metrics:send-seconds    hash    "<destination>|<bucket le>" -> attempts whose send took at
                                        most that long (and more than the bucket below), and
                                        "<destination>|sum" -> their seconds: the send histogram
- relay:metrics:sessions        hash    outcome -> sessions whose outcome was emitted
- relay:dashboard:secret        string  32 random bytes, set once (SET NX, no expiry): mixed with the
                                        admin token into the key that signs the dashboard's cookie
                                        (relay/web/dashboard/auth.py)
- relay:dashboard:revoked:<session id>  string  "1": a dashboard login ended by its logout; expires
                                        when that login would have
"""

INBOX = "relay:inbox"
INBOX_GROUP = "fanout"
EVENT_LOG = "relay:event-log"
DEAD_LETTERS = "relay:dead-letters"
DUE = "relay:due"
SESSIONS = "relay:sessions"
WORKERS = "relay:workers"
METRICS_ATTEMPTS = "relay:metrics:attempts"
METRICS_SEND_SECONDS = "relay:metrics:send-seconds"
METRICS_SESSIONS = "relay:metrics:sessions"
DELIVERY_PREFIX = "relay:delivery:"
EVENT_PREFIX = "relay:event:"
# Written by versions before per-destination queues; read only to carry their contents over
# (workers/migrate.py).
LEGACY_LEASES = "relay:leases"
LEGACY_SWEEPER = "relay:sweeper"
# Written by versions before the event log (it keeps every attempt now): deleted (workers/migrate.py).
LEGACY_ATTEMPT_LOG = "relay:attempt-log"
DASHBOARD_SECRET = "relay:dashboard:secret"


def dedup_key(event_id: str) -> str:
    """Marks an event id as seen."""
    return f"relay:dedup:{event_id}"


def event_key(event_id: str) -> str:
    """The envelope of an event that is being delivered."""
    return f"{EVENT_PREFIX}{event_id}"


def delivery_key(event_id: str) -> str:
    """Each destination's delivery state for one event: what makes a delivery run at most once."""
    return f"{DELIVERY_PREFIX}{event_id}"


def attempts_key(event_id: str) -> str:
    """Written by versions before the event log: the attempts of the event's deliveries that did
    not succeed at once (relay/store/dead_letters.py's attempts reads it for their dead letters)."""
    return f"relay:attempts:{event_id}"


def event_log_key(source: str, session_id: str) -> str:
    """The event log's records of one session's events: rules fired, body, every attempt
    (relay/store/event_log.py)."""
    return f"relay:event-log:{source}:{session_id}"


def stats_key(minute: int) -> str:
    """One minute's counts for `relay stats` (relay/store/stats.py); `minute` is unix time // 60."""
    return f"relay:stats:{minute}"


def dead_letter_key(destination: str, event_id: str) -> str:
    """One delivery that will not be retried any more."""
    return f"relay:dead-letter:{destination}:{event_id}"


def destination_key(name: str) -> str:
    """A destination's health: consecutive failures, and whether (and why) it is paused."""
    return f"relay:destination:{name}"


def parked_key(name: str) -> str:
    """Deliveries waiting for a paused destination."""
    return f"relay:parked:{name}"


def queue_key(name: str) -> str:
    """A destination's deliveries waiting to be sent, by due time."""
    return f"relay:queue:{name}"


def inflight_key(name: str) -> str:
    """A destination's deliveries being sent, by when they are presumed lost."""
    return f"relay:inflight:{name}"


def rate_key(name: str) -> str:
    """When a rate-limited destination may be sent to next."""
    return f"relay:rate:{name}"


def session_key(source: str, session_id: str) -> str:
    """One session's record (relay/store/sessions.py)."""
    return f"relay:session:{source}:{session_id}"


def group_key(destination: str, source: str, session_id: str) -> str:
    """One session's grouped message for one destination (relay/store/groups.py)."""
    return f"relay:group:{destination}:{source}:{session_id}"


def order_key(destination: str, source: str, session_id: str) -> str:
    """One session's ordered delivery to one destination (relay/store/ordering.py)."""
    return f"relay:order:{destination}:{source}:{session_id}"


def dashboard_revoked_key(session_id: str) -> str:
    """Marks a dashboard login (its random session id) as ended by a logout."""
    return f"relay:dashboard:revoked:{session_id}"
