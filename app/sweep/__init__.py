"""Sweepers: timers that tidy up what crashes and the passing of time leave behind.

Each runs at start and then on its own interval, as a task the server starts and stops with
itself (``server._sweepers_ctx``); each can also be run once, through its ``sweep_once``
(``python -m app sweep``, tests). Every one is safe to run from several replicas at once.

- ``reservations``: a process that dies between reserving a review's budget and settling it
  leaves the reservation open, and it would count against the repository's budgets at its full
  amount forever. Reservations older than ``RESERVATION_TIMEOUT_SECONDS`` are settled at what the
  ledger recorded for them, and each release is logged.
- ``deliveries``: every delivery is stored with its payload; handled ones would otherwise be kept
  forever. ``done`` deliveries are purged ``DELIVERY_RETENTION_DAYS`` after they finished, in
  short batches; ``failed`` ones stay until replayed or purged by hand
  (``python -m app deliveries --purge-failed``).

``periodic`` is the timer they share; ``sweepers`` builds the server's set from its settings.

This ``__init__`` imports nothing, so that ``python -m app deliveries --purge-failed`` does not
load the model clients that the reservations sweeper's ledger imports.
"""
