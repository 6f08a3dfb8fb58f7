"""PostgreSQL LISTEN/NOTIFY for the change feed.

One connection per process, outside the pool, LISTENs on the change channel;
every notification wakes the follower, which then reads ``key_changes`` as a
poll would. Notifications carry no data: the table stays the only source of
truth, and polling stays the safety net for anything a notification misses
(a dropped connection, a restart of the database). After every (re)connection
the follower is woken once, to pick up what happened while nobody listened. A
change that commits below numbers already read (a transaction that drew its
number early and committed late) is found the same way: its commit notifies,
and the follower's read asks for every gap it has not yet settled.

A lost connection is noticed at once when it is closed, and within about
``health_every`` seconds plus the TCP keepalive time when it silently hangs:
the listener sends a ``SELECT 1`` whenever it has been idle that long.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANGE_CHANNEL = "woes_auth_key_changes"


# libpq settings so that nothing waits forever on a database that went away (a dropped
# connection, a partition, a stuck server). Any of them given in the URL's query wins.
PG_CONNECT_DEFAULTS: dict[str, object] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
    "options": "-c statement_timeout=5000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=60000",
}


def libpq_conninfo(url: str) -> tuple[str, dict]:
    """A libpq URI and keyword settings for a ``postgresql+psycopg://`` SQLAlchemy URL."""
    parsed = make_url(url)
    settings = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in parsed.query and k != "options"}
    plain = parsed.set(drivername="postgresql")
    return plain.render_as_string(hide_password=False), settings


class PgChangeListener:
    def __init__(self, url: str, channel: str, *, health_every: float = 5.0, max_backoff: float = 5.0):
        self._conninfo, self._settings = libpq_conninfo(url)
        self.channel = channel
        self.health_every = health_every
        self.max_backoff = max_backoff
        self.connected = threading.Event()
        self.notifications = 0
        self.connections = 0

    def run(self, wake: Callable[[], None], stop: threading.Event) -> None:
        """Listen until ``stop`` is set, reconnecting with backoff; never raises."""
        import psycopg
        from psycopg import sql

        backoff = 0.25
        warned = False
        while not stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, **self._settings) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.connections += 1
                    self.connected.set()
                    if warned:
                        log.warning("change notifications: listening again")
                    else:
                        log.info("change notifications: listening on PostgreSQL channel %s", self.channel)
                    warned = False
                    backoff = 0.25
                    wake()  # whatever changed while nobody listened
                    idle = 0.0
                    while not stop.is_set():
                        got = 0
                        for _ in conn.notifies(timeout=0.5):
                            got += 1
                            self.notifications += 1
                            wake()
                        if got:
                            idle = 0.0
                            continue
                        idle += 0.5
                        if idle >= self.health_every:
                            conn.execute("SELECT 1")
                            idle = 0.0
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                if not warned:
                    log.warning(
                        "change notifications unavailable (%s); polling continues, retrying",
                        type(exc).__name__,
                    )
                    warned = True
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:
                self.connected.clear()
                log.exception("change notifications: unexpected error; polling continues, retrying")
                stop.wait(self.max_backoff)
        self.connected.clear()
