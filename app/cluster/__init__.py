"""Several replicas on one PostgreSQL: what one replica learns that the others must hear at once.

The database already makes replicas correct together (claims with leases, per-PR advisory
locks, reservations and merge intents in rows); this package makes them prompt: a delivery
stored by one replica wakes the idle workers of all, and a new head accepted by one stops the
now-outdated review running on another before it spends more or posts.
"""

from app.cluster.bus import ClusterBus, listen_dsn

__all__ = ["ClusterBus", "listen_dsn"]
