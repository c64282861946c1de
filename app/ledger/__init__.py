"""The cost ledger reconciled against the gateway's own logs, and outcomes written back to them.

``cf_logs``: the Cloudflare logs API client; ``reconcile``: matching logs to ledger rows (pure);
``store``: the rows; ``writeback``: feedback outcomes to the logs; ``task``: a run, the server's
timer and the health detail; ``cli``: ``python -m app ledger ...``.
"""
