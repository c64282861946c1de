"""Webhook intake: from an HTTP request to a durably stored delivery, and the request's answer.

A request flows through these modules, in this order::

    POST /webhook ─▶ accept ─▶ verify ─▶ routes ─▶ rows ─▶ answer (202, or 200 / 4xx / 503)
                     (which      (HMAC,    (does a    (one INSERT
                      intake)     headers,  handler    per batch)
                                  JSON)     want it?)

- ``accept``: the intake the server talks to (``create_intake``), and the bound on what it holds
  in memory. On a SQLite file, ``ProcessIntake`` forwards each request to the intake process;
  elsewhere (PostgreSQL), ``InProcessIntake`` does the same checks in the server's process and
  stores through ``queue.IntakeWriter``.
- ``verify``: the checks, in the order that gives each failure the status GitHub's delivery log
  should show (401 signature, 400 headers or body, 415 content type), and the row to store,
  with every payload field read defensively.
- ``routes``: which events and actions some handler wants, as plain data (``RouteTable``), so
  that a delivery nobody handles is stored already done and the intake process needs no
  handler code.
- ``process``: the intake process on SQLite (``python -m app.intake.process``), which verifies,
  decides and stores batches of requests and sends back their answers.
- ``rows``: the one plain ``sqlite3`` statement that stores a batch of deliveries.
- ``sqlite_writer``: the pragmas of every SQLite connection, the writer thread for batches stored
  outside the webhook, and the WAL checkpointer.

A request is answered only once its delivery is committed; a redelivery (the same
``X-GitHub-Delivery``) is recognised by the insert itself and answered 200.

This ``__init__`` imports nothing: the intake process and the store import just the modules they
need (``process`` loads in milliseconds, without SQLAlchemy or the handlers), and ``accept``,
which needs the queue, is not pulled in by the store that the queue itself imports.
"""
