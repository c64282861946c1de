"""Command line: ``python -m app [serve|migrate|deliveries|replay|...]``.

Thin on purpose: read ``Settings`` from the environment, then hand over to the module that does
the work. ``serve`` is the default when no sub-command is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.cli.startup import require_database
from app.settings import Settings, SettingsError

if TYPE_CHECKING:
    from aiohttp import web

    from app.queue import DeliveryQueue
    from app.store.db import Database

#: The collector's generation thresholds once the server has started (Python's are 700, 10, 10).
HEAP_THRESHOLDS: tuple[int, int, int] = (20_000, 20, 10)

DESCRIPTION = (
    "aigateway: a GitHub App that reviews pull requests with two models. Settings come from the "
    "environment and a .env file in the current directory. Without a command, serve runs."
)


def _load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from app.event_loop import new_event_loop
    from app.logs import configure_logging
    from app.server import create_app

    overrides: dict[str, Any] = {}
    if args.log_format:
        overrides["log_format"] = args.log_format
    # In the settings, so that the operator listener (OPERATOR_PORT) binds the same host.
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if getattr(args, "web_only", False):
        overrides["serve_role"] = "web"
    elif getattr(args, "workers_only", False):
        overrides["serve_role"] = "workers"
    settings = _load_settings(**overrides)
    settings.check_for_server()
    redactor = configure_logging(
        fmt=settings.log_format, level=settings.log_level, secrets=settings.secret_values()
    )
    from app.cli.startup import serve_lines

    for line in serve_lines(settings):
        logging.getLogger("app.serve").info(line)
    app = create_app(settings, redactor=redactor)
    loop = new_event_loop(settings.event_loop)
    app.on_startup.append(_settle_heap)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=15.0,
        loop=loop,
    )
    return 0


async def _settle_heap(app: web.Application) -> None:
    """Move everything the start-up made (modules, clients, caches) out of the collector's sight.

    A full collection walks every tracked object; after start-up that is a few hundred thousand
    objects that live as long as the process, and each walk stalls the event loop for a tenth of
    a second under load. Frozen, they are never walked again, and the young generation is let
    grow larger before it is collected: reviews make many short-lived containers, most freed by
    reference counting before any collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*HEAP_THRESHOLDS)


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    """The configured database, migrated, disposed of afterwards: what every command that reads
    or changes stored state opens."""
    from app.store import migrate
    from app.store.db import Database

    db = Database.from_url(settings.database_url)
    try:
        await migrate.upgrade(db.engine)
        yield db
    finally:
        await db.dispose()


def _run(coro_factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro_factory())


def cmd_migrate(_args: argparse.Namespace) -> int:
    from app.store import migrate
    from app.store.engine import create_engine

    settings = _load_settings()

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            await migrate.upgrade(engine)
            print(f"database at revision {await migrate.current_revision(engine)}")
        finally:
            await engine.dispose()
        return 0

    return _run(run)


def cmd_deliveries(args: argparse.Namespace) -> int:
    from app.queue import FAILED, DeliveryQueue

    if args.older_than is not None and not args.purge_failed:
        print("--older-than goes with --purge-failed", file=sys.stderr)
        return 2
    settings = _load_settings()
    if not require_database(settings):
        return 1

    async def run() -> int:
        async with _database(settings) as db:
            queue = DeliveryQueue(db, lease_seconds=settings.lease_seconds)
            if args.purge_failed:
                return await _purge_failed(queue, args.older_than)
            rows = await queue.recent(status=FAILED if args.failed else None, limit=args.limit)
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "id": d.id,
                                "event": d.event,
                                "action": d.action,
                                "repository": d.repository,
                                "status": d.status,
                                "attempts": d.attempts,
                                "received_at": d.received_at.isoformat(),
                                "last_error": d.last_error,
                            }
                            for d in rows
                        ],
                        indent=2,
                    )
                )
                return 0
            if not rows:
                print("no failed deliveries" if args.failed else "no deliveries")
                return 0
            for d in rows:
                kind = f"{d.event}.{d.action}" if d.action else d.event
                line = (
                    f"{d.id}  {d.received_at:%Y-%m-%d %H:%M:%S}  {d.status:<7}  "
                    f"attempts={d.attempts}  {kind}  {d.repository or '-'}"
                )
                if d.last_error:
                    line += f"\n    error: {d.last_error.splitlines()[0][:300]}"
                print(line)
            return 0

    return _run(run)


async def _purge_failed(queue: DeliveryQueue, older_than_days: float | None) -> int:
    """``deliveries --purge-failed``: failed deliveries are never purged on a timer."""
    from datetime import timedelta

    from app.sweep.deliveries import purge_failed

    older_than = None if older_than_days is None else timedelta(days=older_than_days)
    purged = await purge_failed(queue, older_than=older_than)
    which = "" if older_than_days is None else f" finished more than {older_than_days:g} days ago"
    print(f"purged {purged} failed deliver{'y' if purged == 1 else 'ies'}{which}")
    return 0


def cmd_sweep(_args: argparse.Namespace) -> int:
    """Run every sweeper once, as the server's timers would (e.g. from cron)."""
    from datetime import timedelta

    from app.queue import DeliveryQueue
    from app.quota import QuotaLedger
    from app.sweep.deliveries import DeliveryPurger
    from app.sweep.reservations import ReservationSweeper

    settings = _load_settings()

    async def run() -> int:
        async with _database(settings) as db:
            reservations = ReservationSweeper(
                QuotaLedger(db), timeout=timedelta(seconds=settings.reservation_timeout_seconds)
            )
            released = await reservations.sweep_once()
            print(f"released {len(released)} stale budget reservations")
            purger = DeliveryPurger(
                DeliveryQueue(db, lease_seconds=settings.lease_seconds),
                retention=timedelta(days=settings.delivery_retention_days),
            )
            print(f"purged {await purger.sweep_once()} done deliveries")
            return 0

    return _run(run)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.file is None and args.id is None:
        print("replay needs a delivery ID or --file PAYLOAD --event EVENT", file=sys.stderr)
        return 2
    if args.file is not None and not args.event:
        print("replay --file needs --event (the X-GitHub-Event name)", file=sys.stderr)
        return 2
    if args.id is not None:
        return _requeue(args.id)
    return _replay_file(Path(args.file), args.event)


def _requeue(delivery_id: str) -> int:
    from app.queue import DeliveryQueue

    settings = _load_settings()
    if not require_database(settings):
        return 1

    async def run() -> int:
        async with _database(settings) as db:
            queue = DeliveryQueue(db, lease_seconds=settings.lease_seconds)
            existing = await queue.get(delivery_id)
            if existing is None:
                print(f"no delivery {delivery_id}", file=sys.stderr)
                return 1
            if not await queue.requeue(delivery_id):
                print(f"delivery {delivery_id} is running; not re-queued", file=sys.stderr)
                return 1
            print(f"re-queued {delivery_id} ({existing.event}); the server's workers will run it")
            return 0

    return _run(run)


def _replay_file(path: Path, event_name: str) -> int:
    """Feed a saved payload through the queue and the handlers, in this process."""
    from gidgethub import sansio

    from app.intake.verify import to_new_delivery
    from app.logs import configure_logging
    from app.server import create_app

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print(f"{path} does not hold a JSON object", file=sys.stderr)
        return 2
    # No operator listener: the server that may be running holds its port.
    settings = _load_settings(log_format="text", operator_port=None)
    settings.check_for_server()
    redactor = configure_logging(fmt="text", level="INFO", secrets=settings.secret_values())

    async def run() -> int:
        from app.queue import WorkerPool
        from app.server import SERVICES

        app = create_app(settings, run_workers=False, redactor=redactor)
        delivery_id = f"replay-{uuid.uuid4()}"
        event = sansio.Event(data, event=event_name, delivery_id=delivery_id)
        from aiohttp import web

        runner = web.AppRunner(app)
        await runner.setup()  # runs the cleanup contexts: session, database, auth
        try:
            services = app[SERVICES]
            from app.handlers import Dispatcher, build_router

            new = to_new_delivery(event)
            await services.queue.insert_batch([new])
            pool = WorkerPool(
                services.queue,
                Dispatcher(build_router(), services),
                count=0,
                max_attempts=1,
                retry_base_seconds=0,
                retry_max_seconds=0,
                poll_interval=1,
            )
            result = await pool.run_one(delivery_id)
            if result is None:
                print(f"could not claim {delivery_id}", file=sys.stderr)
                return 1
            print(
                f"{delivery_id}: {result.status}"
                + (f" ({result.last_error})" if result.last_error else "")
            )
            return 0 if result.status == "done" else 1
        finally:
            await runner.cleanup()

    return _run(run)


def cmd_review_diff(args: argparse.Namespace) -> int:
    """Review a local patch with both models through the configured gateway; post nothing."""
    from app.cli.review_diff import run

    return run(args, load_settings=_load_settings)


def cmd_quota(args: argparse.Namespace) -> int:
    """Spend against each budget, per repository, from the ledger."""
    from app.ledger.cli import format_spend_sides
    from app.quota import QuotaLedger, format_spend_report

    settings = _load_settings()
    if not require_database(settings):
        return 1

    async def run() -> int:
        async with _database(settings) as db:
            ledger = QuotaLedger(db)
            if args.repo:
                reports = [await ledger.spend(args.repo)]
            else:
                reports = await ledger.spend_all()
            if not reports:
                print("no spend recorded yet")
                return 0
            for report in reports:
                print(f"## {report.repository}\n")
                print(format_spend_report(report))
                print()
            print(await format_spend_sides(db, args.repo))
            return 0

    return _run(run)


def cmd_ledger(args: argparse.Namespace) -> int:
    """Reconcile the ledger with the gateway's logs, or list what does not match (app/ledger)."""
    from app.ledger.cli import run_ledger_command

    settings = _load_settings()
    return _run(lambda: run_ledger_command(settings, args.ledger_command, args.since))


def cmd_report(args: argparse.Namespace) -> int:
    """The feedback report for one repository: outcomes per (tier, decision) and calibration."""
    from app.feedback.registry import FeedbackStore
    from app.feedback.report import build_report, text_table
    from app.store.types import utcnow

    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", args.repo):
        print(f"--repo must be owner/name, not {args.repo!r}", file=sys.stderr)
        return 2
    since: datetime | None = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            print(f"--since must be a date (YYYY-MM-DD), not {args.since!r}", file=sys.stderr)
            return 2
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    settings = _load_settings()
    if not require_database(settings):
        return 1

    async def run() -> int:
        async with _database(settings) as db:
            store = FeedbackStore(db)
            records = await store.records(args.repo, since=since)
            report = build_report(args.repo, records, at=utcnow(), since=since)
            if args.json:
                print(json.dumps(report.to_json(), indent=2))
            elif not report.rows:
                print(f"no registered changes for {args.repo}" + (" since then" if since else ""))
            else:
                print(text_table(report))
            return 0

    return _run(run)


def cmd_actions(args: argparse.Namespace) -> int:
    """List the outbox's actions that failed for good, or queue one again."""
    from app.policy.outbox import Outbox

    settings = _load_settings()
    if not require_database(settings):
        return 1

    async def run() -> int:
        async with _database(settings) as db:
            outbox = Outbox(db)
            if args.verb == "retry":
                if args.id is None:
                    print("usage: python -m app actions retry ID", file=sys.stderr)
                    return 2
                if not await outbox.retry(args.id):
                    print(f"action {args.id} is not a failed action", file=sys.stderr)
                    return 1
                print(f"action {args.id} queued again; the server sends it within a minute")
                return 0
            failed = await outbox.failed()
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "id": a.id,
                                "kind": a.kind.value,
                                "repository": a.repository,
                                "pr_number": a.pr_number,
                                "head_sha": a.head_sha,
                                "attempts": a.attempts,
                                "last_error": a.last_error,
                                "updated_at": a.updated_at.isoformat(),
                            }
                            for a in failed
                        ],
                        indent=2,
                    )
                )
                return 0
            if not failed:
                print("no failed actions")
                return 0
            for a in failed:
                print(
                    f"{a.id}  {a.updated_at:%Y-%m-%d %H:%M:%S}  {a.kind.value:<8}  "
                    f"{a.repository}#{a.pr_number} at {a.head_sha[:12]}  attempts={a.attempts}"
                )
                if a.last_error:
                    print(f"    error: {a.last_error.splitlines()[0][:300]}")
            print("\nqueue one again with: python -m app actions retry ID")
            return 0

    return asyncio.run(run())


def cmd_schema(_args: argparse.Namespace) -> int:
    from app.repo_config import render_config_json_schema

    sys.stdout.write(render_config_json_schema())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from app.repo_config import load_repo_config

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    result = load_repo_config(text, source=args.file)
    for error in result.errors:
        print(str(error))
    if result.errors:
        return 1
    print(f"{args.file}: OK")
    return 0


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None
    if not days >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"a number of days cannot be negative: {value!r}")
    return days


def cmd_setup(args: argparse.Namespace) -> int:
    from app.setup.cli import setup_command

    return setup_command(**{k: v for k, v in vars(args).items() if k not in {"command", "func"}})


def cmd_doctor(args: argparse.Namespace) -> int:
    from app.setup.cli import doctor_command

    return doctor_command(dry=args.dry)


def build_parser() -> argparse.ArgumentParser:
    prog = "aigateway" if Path(sys.argv[0]).name == "aigateway" else "python -m app"
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the webhook server and its workers (default)")
    serve.add_argument("--host", default=None, help="address to listen on (default: HOST)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default: PORT)")
    serve.add_argument(
        "--log-format", choices=["json", "text"], default=None, help="default: LOG_FORMAT"
    )
    split = serve.add_mutually_exclusive_group()
    split.add_argument(
        "--web-only",
        action="store_true",
        help="only take webhooks and store them (PostgreSQL; other replicas do the work)",
    )
    split.add_argument(
        "--workers-only",
        action="store_true",
        help="only do the queue's work, no /webhook (PostgreSQL; other replicas take webhooks)",
    )
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.set_defaults(func=cmd_migrate)

    dl = sub.add_parser("deliveries", help="list recent deliveries")
    dl.add_argument("--failed", action="store_true", help="only deliveries that failed for good")
    dl.add_argument("--limit", type=int, default=50, help="how many, newest first (default: 50)")
    dl.add_argument("--json", action="store_true", help="print JSON")
    dl.add_argument(
        "--purge-failed",
        action="store_true",
        help="delete failed deliveries (all, or with --older-than) and print how many",
    )
    dl.add_argument(
        "--older-than",
        type=_days,
        default=None,
        metavar="DAYS",
        help="with --purge-failed: only those that failed more than DAYS ago",
    )
    dl.set_defaults(func=cmd_deliveries)

    sw = sub.add_parser("sweep", help="release stale budget reservations, purge old deliveries")
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("replay", help="re-queue a stored delivery, or run a saved payload")
    rp.add_argument("id", nargs="?", default=None, help="a stored delivery id")
    rp.add_argument("--file", default=None, help="a saved webhook payload (JSON)")
    rp.add_argument("--event", default=None, help="its X-GitHub-Event, e.g. pull_request")
    rp.set_defaults(func=cmd_replay)

    from app.cli.review_diff_args import add_parser as add_review_diff

    add_review_diff(sub)
    sub.choices["review-diff"].set_defaults(func=cmd_review_diff)

    qt = sub.add_parser("quota", help="spend against each budget, per repository")
    qt.add_argument("--repo", default=None, help="owner/name; all repositories when omitted")
    qt.set_defaults(func=cmd_quota)

    lg = sub.add_parser("ledger", help="reconcile the cost ledger with the gateway's logs")
    lg.add_argument(
        "ledger_command",
        choices=["reconcile", "discrepancies"],
        help="reconcile: correct the ledger from the gateway's logs now; "
        "discrepancies: list calls one side has and the other lacks",
    )
    lg.add_argument("--since", default=None, help="reconcile: from this date (ISO, UTC)")
    lg.set_defaults(func=cmd_ledger)

    fb = sub.add_parser("report", help="what became of the changes the bot decided on")
    fb.add_argument("--repo", required=True, help="owner/name")
    fb.add_argument("--since", default=None, help="only changes decided since this date")
    fb.add_argument("--json", action="store_true", help="print JSON")
    fb.set_defaults(func=cmd_report)

    ac = sub.add_parser("actions", help="actions (merge, escalate) that failed for good")
    ac.add_argument("verb", nargs="?", choices=["retry"], help="retry ID: queue one again")
    ac.add_argument("id", nargs="?", type=int, default=None, help="the action's id")
    ac.add_argument("--failed", action="store_true", help="list them (the default)")
    ac.add_argument("--json", action="store_true", help="print JSON")
    ac.set_defaults(func=cmd_actions)

    sc = sub.add_parser("schema", help="print the JSON Schema of .github/aigateway.yml")
    sc.set_defaults(func=cmd_schema)

    cc = sub.add_parser("check-config", help="validate a .github/aigateway.yml file")
    cc.add_argument("file", help="the file to check")
    cc.set_defaults(func=cmd_check_config)

    st = sub.add_parser("setup", help="register the GitHub App from app.yml (manifest flow)")
    st.add_argument("--url", dest="public_url", default=None, help="this server's public URL")
    st.add_argument("--org", default=None, help="register the App for this organization")
    st.add_argument("--github-url", default="https://github.com", help="GitHub (or GHES) web URL")
    st.add_argument("--name", default=None, help="the App's name (default: app.yml's)")
    st.add_argument("--env-file", default=".env", help="where the settings are written")
    st.add_argument("--manifest", default=None, help="app.yml to register (default: ./app.yml)")
    st.add_argument("--force", action="store_true", help="replace existing App settings")
    st.add_argument("--host", default="127.0.0.1", help="the setup page's address")
    st.add_argument("--port", type=int, default=3000, help="the setup page's port (0: any)")
    st.set_defaults(func=cmd_setup)

    dr = sub.add_parser("doctor", help="check the App key, webhook secret, gateway and database")
    dr.add_argument("--dry", action="store_true", help="check gateway settings without calling it")
    dr.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        args = parser.parse_args(["serve"])
    try:
        result: int = args.func(args)
    except SettingsError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
