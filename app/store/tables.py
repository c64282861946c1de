"""The database tables, as SQLAlchemy Core metadata.

Core rather than ORM: every statement the bot runs is a short, explicit query (claim a delivery,
reserve a budget), and the same statements must behave identically on SQLite and PostgreSQL.
Migrations in ``store/migrations`` create exactly these tables; a test checks they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
)

from app.store.types import UTCDateTime

metadata = MetaData()

deliveries = Table(
    "deliveries",
    metadata,
    # X-GitHub-Delivery; GitHub keeps it on redelivery, which is what makes dedupe work.
    Column("id", String(100), primary_key=True),
    Column("event", String(100), nullable=False),
    Column("action", String(100), nullable=True),
    Column("installation_id", BigInteger, nullable=True),
    Column("repository", String(300), nullable=True),
    # Work for one pull request is serialised: at most one running delivery per key.
    Column("pr_key", String(320), nullable=True),
    Column("payload", Text, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    # queued | running | done | failed
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("leased_by", String(100), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
)
Index("ix_deliveries_pr_key", deliveries.c.pr_key, deliveries.c.status)
# Covers the claim query (status, order, due time, PR key), so claiming never reads the rows
# themselves: on SQLite the payload is stored before the later columns, and reaching them would
# mean walking every queued payload's overflow pages.
Index(
    "ix_deliveries_status_received",
    deliveries.c.status,
    deliveries.c.received_at,
    deliveries.c.id,
    deliveries.c.next_attempt_at,
    deliveries.c.lease_expires_at,
    deliveries.c.pr_key,
)

# One row per review run: what was reviewed (head SHA), how it ended, and its check run, so a
# retried delivery reuses its check run and a later push can review only what changed since.
reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=False),
    Column("head_sha", String(64), nullable=False),
    Column("base_sha", String(64), nullable=True),
    Column("delivery_id", String(100), nullable=True),
    # running | published | superseded | skipped | failed
    Column("status", String(16), nullable=False),
    Column("check_run_id", BigInteger, nullable=True),
    Column("incremental_from", String(64), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("conclusion", String(32), nullable=True),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("summary", Text, nullable=True),
    # JSON ``ReviewFacts`` of a published review (``policy/carry``): what the next head inherits.
    Column("facts", Text, nullable=True),
    # Set when a human vouched for this head (approve button, code-owner approval): the carry
    # of earlier findings stops here.
    Column("cleared_by", String(100), nullable=True),
    # JSON of every model answer of the run, stored before publishing: a retried delivery
    # publishes from it instead of paying for the models again.
    Column("outcomes", Text, nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
)
Index("ix_reviews_pr", reviews.c.repository, reviews.c.pr_number, reviews.c.head_sha)

# Fingerprints of the inline comments already posted on a PR: a later review does not repeat them.
posted_comments = Table(
    "posted_comments",
    metadata,
    Column("repository", String(300), primary_key=True),
    Column("pr_number", Integer, primary_key=True),
    Column("fingerprint", String(32), primary_key=True),
    Column("head_sha", String(64), nullable=False),
    Column("posted_at", UTCDateTime(), nullable=False),
)

# ---------------------------------------------------------------------------------- quota (issue 5)

# Money held for model calls: inserted before a call at its maximum cost, settled after it with
# what the provider billed. Budgets count settled actual costs plus open amounts, so calls in
# flight can never push a window over its limit.
reservations = Table(
    "reservations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    # None for calls outside a pull request (per-PR budgets do not apply to them).
    Column("pr_number", Integer, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("amount_usd", Float, nullable=False),
    Column("settled", Boolean, nullable=False, default=False),
    Column("settled_at", UTCDateTime(), nullable=True),
    Column("actual_usd", Float, nullable=True),
)
Index("ix_reservations_window", reservations.c.repository, reservations.c.created_at)
Index("ix_reservations_pr", reservations.c.repository, reservations.c.pr_number)

# One row per model call, whatever its outcome: the cost ledger.
ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("installation_id", BigInteger, nullable=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=True),
    Column("delivery_id", String(100), nullable=True),
    Column("provider", String(50), nullable=False),
    Column("model", String(200), nullable=False),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cached_input_tokens", Integer, nullable=False, default=0),
    # None when the model has no price: the tokens are still recorded.
    Column("cost_usd", Float, nullable=True),
    Column("log_id", String(200), nullable=True),
    # ok | error | refused (refused by a budget: no call was made)
    Column("outcome", String(16), nullable=False),
    Column("reservation_id", Integer, nullable=True),
    # review | ask | api: what the call was for (``app.ledger``)
    Column("purpose", String(16), nullable=False, server_default="review"),
    # What the gateway's own log recorded for the call (all of its requests), once reconciled
    # (``app.ledger``); budgets count ``gateway_cost_usd`` instead of ``cost_usd`` once known.
    Column("gateway_cost_usd", Float, nullable=True),
    Column("gateway_input_tokens", Integer, nullable=True),
    Column("gateway_output_tokens", Integer, nullable=True),
    Column("gateway_cached", Boolean, nullable=True),
    Column("reconciled_at", UTCDateTime(), nullable=True),
)
Index("ix_ledger_repository_at", ledger.c.repository, ledger.c.at)

# Every gateway log (``cf-aig-log-id``) of a ledger row: a call with a repair round or a retry
# made several requests, each logged on its own. The gateway's figures per log, once seen.
ledger_logs = Table(
    "ledger_logs",
    metadata,
    Column("log_id", String(200), primary_key=True),
    Column("ledger_id", Integer, nullable=False),
    Column("cost_usd", Float, nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("cached", Boolean, nullable=True),
    Column("logged_at", UTCDateTime(), nullable=True),
    Column("seen_at", UTCDateTime(), nullable=True),
)
Index("ix_ledger_logs_ledger", ledger_logs.c.ledger_id)

# What reconciliation found wrong: a ledger row's log the gateway never recorded
# (``missing_from_gateway``), or a gateway log carrying the bot's metadata that no ledger row
# holds (``missing_from_ledger``). Unique per (kind, log); resolved when the log turns up.
ledger_discrepancies = Table(
    "ledger_discrepancies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(24), nullable=False),
    Column("log_id", String(200), nullable=False),
    Column("ledger_id", Integer, nullable=True),
    Column("repository", String(300), nullable=True),
    Column("purpose", String(16), nullable=True),
    Column("provider", String(50), nullable=True),
    Column("model", String(200), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("cost_usd", Float, nullable=True),
    Column("detail", Text, nullable=False),
    Column("detected_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
)
Index(
    "ix_ledger_discrepancies_once",
    ledger_discrepancies.c.kind,
    ledger_discrepancies.c.log_id,
    unique=True,
)
Index("ix_ledger_discrepancies_open", ledger_discrepancies.c.resolved_at)

# Reconciliation runs: the next run starts where the last one ended (less an overlap).
ledger_reconciliations = Table(
    "ledger_reconciliations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("since", UTCDateTime(), nullable=False),
    Column("until", UTCDateTime(), nullable=False),
    Column("logs_seen", Integer, nullable=False),
    Column("rows_corrected", Integer, nullable=False),
    Column("discrepancies", Integer, nullable=False),
)

# A change's outcome written to the gateway logs of the calls that reviewed it: once per
# (change, outcome), so a second run writes nothing and a worse outcome later is written again.
ledger_writebacks = Table(
    "ledger_writebacks",
    metadata,
    Column("change_id", Integer, primary_key=True),
    Column("outcome", String(24), primary_key=True),
    Column("logs", Integer, nullable=False),
    Column("written_at", UTCDateTime(), nullable=False),
)

# "Budget exhausted" comments already posted: at most one per (repository, PR, budget window),
# kept across restarts.
quota_notices = Table(
    "quota_notices",
    metadata,
    Column("repository", String(300), primary_key=True),
    # 0 stands for "no pull request" (a primary key column cannot be NULL).
    Column("pr_number", Integer, primary_key=True),
    # "day:2026-11-24", "week:2026-W48" or "pr"
    Column("window_key", String(32), primary_key=True),
    Column("notified_at", UTCDateTime(), nullable=False),
)

# The budgets last applied to each repository, so that ``python -m app quota`` can print spend
# against limits without fetching every repository's config from GitHub.
quota_budgets = Table(
    "quota_budgets",
    metadata,
    Column("repository", String(300), primary_key=True),
    Column("daily_usd", Float, nullable=True),
    Column("weekly_usd", Float, nullable=True),
    Column("per_pr_usd", Float, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Every autonomy decision taken after a review and what was done about it, for the feedback loop.
# A row is also written for a human's "Approve merge" (``actor`` names them) and for a pull request
# opened for an agent branch (no review yet, so no tier or confidence).
decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=False),
    Column("head_sha", String(64), nullable=False),
    Column("tier", String(16), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("matrix_decision", String(16), nullable=True),
    Column("decision", String(16), nullable=False),
    # JSON list of {"guard", "effect", "reason"}: every guard that applied.
    Column("guards", Text, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("act", Boolean, nullable=False),
    Column("action_taken", String(32), nullable=False),
    Column("result", Text, nullable=True),
    Column("check_run_id", BigInteger, nullable=True),
    # None: the bot's own decision; a login: the person whose button press caused the action.
    Column("actor", String(100), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)
Index("ix_decisions_pr", decisions.c.repository, decisions.c.pr_number, decisions.c.head_sha)
Index("ix_decisions_check_run", decisions.c.check_run_id)

# A merge the bot means to make once the head's checks are green: one row per pull request head.
# ``status``: pending (waiting for checks or GitHub's mergeability), merging (claimed by a worker
# until ``claimed_until``), merged, dropped (head moved, checks failed, closed), refused (GitHub or
# the pull request's state said no; the pull request got one comment saying why).
merge_intents = Table(
    "merge_intents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=False),
    Column("head_sha", String(64), nullable=False),
    Column("merge_method", String(16), nullable=False),
    Column("commit_title", Text, nullable=False),
    Column("commit_message", Text, nullable=False),
    Column("requested_by", String(100), nullable=True),
    # JSON ``DecisionBasis`` (``policy/recheck``): what the bot decided from, so the decision can
    # be taken again on fresh facts right before merging. None for a human's merge.
    Column("basis", Text, nullable=True),
    # The installation to act through when a timer, not an event, re-examines the intent.
    Column("installation_id", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("claimed_until", UTCDateTime(), nullable=True),
    # Set by an event that found the intent claimed: its holder must look again before waiting.
    Column("recheck", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
Index(
    "ux_merge_intents_head",
    merge_intents.c.repository,
    merge_intents.c.pr_number,
    merge_intents.c.head_sha,
    unique=True,
)
Index("ix_merge_intents_sha", merge_intents.c.repository, merge_intents.c.head_sha)

# Comments the bot posted once per pull request head and kind ("merge_refused", ...): a repeated
# event finds its row and stays quiet.
pr_notices = Table(
    "pr_notices",
    metadata,
    Column("repository", String(300), primary_key=True),
    Column("pr_number", Integer, primary_key=True),
    Column("head_sha", String(64), primary_key=True),
    Column("kind", String(100), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# The outbox: an action the bot decided on (merge, escalate), written in the same transaction as
# the review's outcome, then carried out by a sender with bounded retries. ``status``: pending
# (due at ``next_attempt_at``), running (claimed until ``claimed_until``), done, failed (retries
# spent: shown on the check run and by ``python -m app actions --failed``).
actions = Table(
    "actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=False),
    Column("head_sha", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("decision_id", Integer, nullable=True),
    Column("installation_id", BigInteger, nullable=True),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("claimed_until", UTCDateTime(), nullable=True),
    Column("result", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
Index(
    "ux_actions_head_kind",
    actions.c.repository,
    actions.c.pr_number,
    actions.c.head_sha,
    actions.c.kind,
    unique=True,
)
Index("ix_actions_status_due", actions.c.status, actions.c.next_attempt_at)

# Slash-commands (``app/commands``): each command line of a comment runs once, however often its
# delivery is redelivered or retried; the row is claimed before the command runs.
command_runs = Table(
    "command_runs",
    metadata,
    Column("comment_id", BigInteger, primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=False),
    Column("command", String(40), nullable=False),
    Column("requested_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # The delivery whose handler claimed it; a claim not yet finished is that delivery's to
    # run again when the queue hands it out after its worker died.
    Column("delivery_id", String(100), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
)

# Pull requests whose automatic reviews a person paused with ``/pause`` (``/resume`` deletes the row).
paused_pulls = Table(
    "paused_pulls",
    metadata,
    Column("repository", String(300), primary_key=True),
    Column("pr_number", Integer, primary_key=True),
    Column("paused_by", String(100), nullable=False),
    Column("paused_at", UTCDateTime(), nullable=False),
)

# The feedback loop (``app/feedback``): one registered change per pull request, holding the bot's
# last decision on it (in shadow mode, the decision it would have acted on) and, once merged, the
# merge commit and the pull request's commits (``change_commits``), so later events can be traced back to it.
changes = Table(
    "changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    Column("pr_number", Integer, nullable=False),
    Column("decision_id", Integer, nullable=True),
    Column("head_sha", String(64), nullable=False),
    Column("tier", String(16), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("decision", String(16), nullable=False),
    # The decision before the feedback loop's tightening: what counts as a would-be auto-merge.
    Column("untightened_decision", String(16), nullable=False),
    Column("acted", Boolean, nullable=False),
    Column("decided_at", UTCDateTime(), nullable=False),
    # open | merged | closed (closed without merging)
    Column("state", String(16), nullable=False),
    Column("merged_at", UTCDateTime(), nullable=True),
    Column("merge_sha", String(64), nullable=True),
    Column("merged_by_bot", Boolean, nullable=True),
    # JSON {path: [[first, last], ...]}: the lines the merged change wrote, in the new files.
    Column("touched", Text, nullable=True),
    # JSON list of the check and status names that passed on the merged head.
    Column("passed_checks", Text, nullable=True),
    Column("window_ends_at", UTCDateTime(), nullable=True),
)
Index("ix_changes_pr", changes.c.repository, changes.c.pr_number, unique=True)
Index("ix_changes_merge_sha", changes.c.repository, changes.c.merge_sha)

# The commits of a merged change (its pull request's commits and the merge commit): a revert or a
# failed check names one of them, and this finds the change it belongs to.
change_commits = Table(
    "change_commits",
    metadata,
    Column("change_id", Integer, primary_key=True),
    Column("sha", String(64), primary_key=True),
    Column("repository", String(300), nullable=False),
)
Index("ix_change_commits_sha", change_commits.c.repository, change_commits.c.sha)

# What happened to a registered change. ``evidence`` names the event that showed it (a commit, a
# pull request, a check, a review), and is unique per change and kind, so a redelivered event
# is counted once.
change_effects = Table(
    "change_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("change_id", Integer, nullable=False),
    # reverted | broke_ci | follow_up_fix | human_override
    Column("kind", String(24), nullable=False),
    Column("evidence", String(300), nullable=False),
    Column("detail", Text, nullable=False),
    Column("observed_at", UTCDateTime(), nullable=False),
)
Index(
    "ix_change_effects_once",
    change_effects.c.change_id,
    change_effects.c.kind,
    change_effects.c.evidence,
    unique=True,
)

# Admin resets of the automatic tightening (``autonomy reset``): the loop starts counting afresh.
autonomy_resets = Table(
    "autonomy_resets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(300), nullable=False),
    Column("reset_by", String(100), nullable=False),
    Column("reset_at", UTCDateTime(), nullable=False),
)
Index("ix_autonomy_resets_repository", autonomy_resets.c.repository, autonomy_resets.c.reset_at)

# Coding-agent jobs of the service API (``app/api/jobs.py``): one row per job, from queued to
# succeeded or failed. The prompt is not kept (a job is never resumed: one that a crash cut off
# ends ``failed: interrupted``); ``runner`` and ``heartbeat_at`` say which process runs it and
# that it is still alive, so a replica's start fails only rows no live process holds.
api_jobs = Table(
    "api_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repository", String(300), nullable=False),
    Column("ref", String(255), nullable=True),
    Column("sandbox", String(64), nullable=False),
    # Who asked (the OIDC subject, or "static-token") and the token's repository owner, if any,
    # for the record; polling a job is authorised on its repository, as creating it was.
    Column("caller", String(300), nullable=False),
    Column("caller_owner", String(100), nullable=True),
    # queued | running | succeeded | failed
    Column("status", String(16), nullable=False),
    Column("runner", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("heartbeat_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("output", Text, nullable=True),
    Column("stderr", Text, nullable=True),
    Column("diff", Text, nullable=True),
    Column("error", Text, nullable=True),
)
Index("ix_api_jobs_status", api_jobs.c.status, api_jobs.c.heartbeat_at)


def of_pull(table: Table, *, head: bool = False) -> ColumnElement[bool]:
    """Rows of one pull request (and, with ``head``, one head of it), the values bound at
    execution as ``repository``, ``pr_number`` and ``head_sha``: for statements built once."""
    conditions = [
        table.c.repository == bindparam("repository"),
        table.c.pr_number == bindparam("pr_number"),
    ]
    if head:
        conditions.append(table.c.head_sha == bindparam("head_sha"))
    return and_(*conditions)
