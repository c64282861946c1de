"""Which deliveries some handler wants, as plain data.

Intake stores a delivery nobody handles as already done, so that no worker claims it. It decides
that in the intake process (``app.intake.process``), which does not import the handlers.
gidgethub's ``Router`` can only be asked which callbacks an event gets; ``RecordingRouter``
notes every route as it is added, and ``RouteTable`` answers the same question from those notes
with the same rules as ``Router.fetch``: a route without a data detail takes every delivery of its
event, a route with one (``action="opened"``) the deliveries whose top-level field has that value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing

# event → (takes every delivery of it, ((data key, (values…)), …)); plain data, so it can be
# handed to another process as is.
Routes = dict[str, tuple[bool, tuple[tuple[str, tuple[Any, ...]], ...]]]


class RecordingRouter(routing.Router):
    """A ``Router`` that also keeps a ``RouteTable`` of what it routes.

    Composing routers (``RecordingRouter(*routers)``) adds every route of theirs through
    ``add``, so the composed router's table covers them all.
    """

    def __init__(self, *other_routers: routing.Router) -> None:
        self._recorded: dict[str, tuple[bool, dict[str, set[Any]]]] = {}
        super().__init__(*other_routers)

    def add(self, func: Any, event_type: str, **data_detail: Any) -> None:
        super().add(func, event_type, **data_detail)
        details = self._recorded.setdefault(event_type, (False, {}))[1]
        if not data_detail:
            self._recorded[event_type] = (True, details)
        else:
            ((key, value),) = data_detail.items()
            details.setdefault(key, set()).add(value)

    def table(self) -> RouteTable:
        return RouteTable(
            {
                event: (every, tuple((key, tuple(values)) for key, values in details.items()))
                for event, (every, details) in self._recorded.items()
            }
        )


class RouteTable:
    """``Router.fetch(event)`` is non-empty exactly when ``wants(event, data)`` is true."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self._lookup = {
            event: (every, [(key, frozenset(values)) for key, values in details])
            for event, (every, details) in routes.items()
        }

    def wants(self, event: str, data: Mapping[str, Any]) -> bool:
        rule = self._lookup.get(event)
        if rule is None:
            return False
        every, details = rule
        if every:
            return True
        for key, values in details:
            try:
                if key in data and data[key] in values:
                    return True
            except TypeError:  # an unhashable value (a list where a string belongs) is no match
                continue
        return False
