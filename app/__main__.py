"""Command line: ``python -m app [serve|migrate|deliveries|replay|...]``.

Thin on purpose: read ``Settings`` from the environment, then hand over to the module that does
the work. ``serve`` is the default when no sub-command is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.settings import Settings, SettingsError


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

    from app.logs import configure_logging
    from app.server import create_app

    overrides: dict[str, Any] = {}
    if args.log_format:
        overrides["log_format"] = args.log_format
    settings = _load_settings(**overrides)
    settings.check_for_server()
    redactor = configure_logging(
        fmt=settings.log_format, level=settings.log_level, secrets=settings.secret_values()
    )
    app = create_app(settings, redactor=redactor)
    web.run_app(
        app,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=15.0,
    )
    return 0


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
    from app.store import migrate
    from app.store.engine import create_engine

    settings = _load_settings()

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            await migrate.upgrade(engine)
            queue = DeliveryQueue(engine, lease_seconds=settings.lease_seconds)
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
        finally:
            await engine.dispose()

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
    from app.store import migrate
    from app.store.engine import create_engine

    settings = _load_settings()

    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            await migrate.upgrade(engine)
            queue = DeliveryQueue(engine, lease_seconds=settings.lease_seconds)
            existing = await queue.get(delivery_id)
            if existing is None:
                print(f"no delivery {delivery_id}", file=sys.stderr)
                return 1
            if not await queue.requeue(delivery_id):
                print(f"delivery {delivery_id} is running; not re-queued", file=sys.stderr)
                return 1
            print(f"re-queued {delivery_id} ({existing.event}); the server's workers will run it")
            return 0
        finally:
            await engine.dispose()

    return _run(run)


def _replay_file(path: Path, event_name: str) -> int:
    """Feed a saved payload through the queue and the handlers, in this process."""
    from gidgethub import sansio

    from app.github.webhook import to_new_delivery
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
    settings = _load_settings(log_format="text")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the webhook server and its workers (default)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--log-format", choices=["json", "text"], default=None)
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.set_defaults(func=cmd_migrate)

    dl = sub.add_parser("deliveries", help="list recent deliveries")
    dl.add_argument("--failed", action="store_true", help="only deliveries that failed for good")
    dl.add_argument("--limit", type=int, default=50)
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_deliveries)

    rp = sub.add_parser("replay", help="re-queue a stored delivery, or run a saved payload")
    rp.add_argument("id", nargs="?", default=None, help="a stored delivery id")
    rp.add_argument("--file", default=None, help="a saved webhook payload (JSON)")
    rp.add_argument("--event", default=None, help="its X-GitHub-Event, e.g. pull_request")
    rp.set_defaults(func=cmd_replay)
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
