"""Pure decisions about what a change deserves: risk tiers, the autonomy matrix, code owners.

Nothing in this package performs I/O: every function takes the data the pipeline already fetched
and returns a value, so each decision can be tested exhaustively and explained in the check run.
The package imports nothing itself, so ``app.repo_config`` can use ``app.policy.risk.Tier`` without
an import cycle through ``app.policy.autonomy``.
"""
