"""What a change deserves, and carrying it out.

``risk``, ``autonomy`` and ``codeowners`` are pure: they take data the pipeline already fetched and
return values, so every decision can be tested exhaustively and explained in the check run.
``actions`` (merge, escalate, agent-branch PRs) and ``decisions`` (the stored decisions and merge
intents) are the only modules here that do I/O. The package imports nothing itself, so
``app.repo_config`` can use ``app.policy.risk.Tier`` without an import cycle.
"""
