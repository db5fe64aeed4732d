"""The `gateway` command: serve, migrate, manage teams and keys, inspect the cache, run the
simulator.

Every subcommand calls the same functions the admin API uses (gateway.admin.accounts), on the same
store the server uses, so the CLI and the web can never disagree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import TomlConfigSettingsSource

from gateway.accounting.usage_report import GROUPS, TAG_KEY, usage_report
from gateway.admin import accounts
from gateway.admin.audit import cli_actor, entry_view
from gateway.errors import GatewayError
from gateway.ops.reconcile import reconcile
from gateway.pricing import PriceError, describe, load_prices
from gateway.runtime.pidfile import read_pid
from gateway.settings import SHIPPED_CONFIG_EXAMPLE, Settings, config_file
from gateway.store import Conflict, Store, migrated_store, open_store
from gateway.store.failures import safe_url

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-usd", help="budget in USD, e.g. 12.50 ('none' clears it)")
    parser.add_argument(
        "--budget-period",
        choices=["day", "week", "month", "total"],
        help="when the budget renews (UTC calendar periods; total: never)",
    )
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--ipm", type=int, help="images per minute")
    parser.add_argument("--allowed-models", help="policy: comma-separated models ('none' clears)")
    parser.add_argument("--allowed-qualities", help="policy: comma-separated qualities")
    parser.add_argument("--max-n", type=int, help="policy: the most images per request")
    parser.add_argument("--max-pixels", type=int, help="policy: the most pixels per image")
    parser.add_argument(
        "--alert-thresholds", help="budget alerts: comma-separated fractions, e.g. 0.5,0.9,1"
    )


def _add_team_options(parser: argparse.ArgumentParser) -> None:
    _add_limit_options(parser)
    parser.add_argument(
        "--price-multiplier", help="chargeback: charged = upstream's cost times this ('none': 1)"
    )


def _worker_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError("between 1 and 64")
    return count


def _limit_fields(ns: argparse.Namespace) -> dict[str, Any]:
    """Only the options given, so that an update changes only those."""
    fields: dict[str, Any] = {}
    for name in (
        "budget_usd",
        "budget_period",
        "rpm",
        "ipm",
        "max_n",
        "max_pixels",
        "price_multiplier",
    ):
        value = getattr(ns, name, None)
        if value is not None:
            fields[name] = None if value == "none" else value
    for name in ("allowed_models", "allowed_qualities", "alert_thresholds"):
        value = getattr(ns, name, None)
        if value is not None:
            fields[name] = None if value == "none" else [v.strip() for v in value.split(",")]
    return fields


async def _with_store(settings: Settings, work: Callable[[Store], Awaitable[int]]) -> int:
    """Run `work` on the store; a key or team it changed is told to every running replica (over
    Redis, as the admin API's changes are), so none goes on using what it cached."""
    changed: list[bool] = []
    async with migrated_store(settings.resolved_database_url) as store:
        store.keys.on_change = lambda: changed.append(True)
        result = await work(store)
    if changed and settings.redis_url is not None:
        await _tell_the_replicas(settings.redis_url.get_secret_value(), settings.redis_timeout_s)
    return result


async def _tell_the_replicas(redis_url: str, timeout_s: float) -> None:
    from gateway.replicas.changes import KEYS, RedisChanges
    from gateway.replicas.redis_link import RedisLink

    link = RedisLink(redis_url, max(timeout_s, 1.0))
    changes = RedisChanges(link)
    try:
        changes.publish(KEYS)
    finally:
        await changes.close()  # waits for the message to go (or to fail, logged)
        await link.close()


def _print_rows(
    rows: list[dict[str, Any]], columns: Sequence[str], *, empty: str | None = None
) -> None:
    """A table with a header; with no rows, `empty` (what to do about it) under the header."""
    table = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in table)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if not table and empty:
        print(f"({empty})")


def _in_words(view: dict[str, Any]) -> dict[str, Any]:
    """A team's or key's view as a person reads it in a table: `no budget`, `no limit`,
    `revoked` or `live`."""
    shown = dict(view)
    if shown.get("budget_usd") is None:
        shown.update(budget_usd="no budget", budget_period="", remaining_usd="")
    for name in ("rpm", "ipm"):
        if shown.get(name) is None:
            shown[name] = "no limit"
    if "revoked" in shown:
        shown["revoked"] = "revoked" if shown["revoked"] else "live"
    return shown


TEAM_COLUMNS = (
    "name",
    "budget_usd",
    "budget_period",
    "spent_usd",
    "reserved_usd",
    "remaining_usd",
    "rpm",
    "ipm",
)
KEY_COLUMNS = (
    "id",
    "team",
    "name",
    "prefix",
    "budget_usd",
    "budget_period",
    "spent_usd",
    "remaining_usd",
    "rpm",
    "ipm",
    "revoked",
)


async def cmd_db(ns: argparse.Namespace, settings: Settings) -> int:
    from gateway.store.copy import CopyRefused, copy_store

    source = ns.source or settings.resolved_database_url
    try:
        report = await copy_store(source, ns.target, overwrite=ns.overwrite)
    except (CopyRefused, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"copied {_without_password(source)} to {_without_password(ns.target)}; checked:")
    for name, value in report.totals.items():
        print(f"  {name:<20} {value:>14,}")
    return 0


def _without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}@{host}" if at else url


async def cmd_migrate(ns: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.resolved_database_url)
    await store.connect()
    try:
        applied = await store.migrate()
    finally:
        await store.close()
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


async def cmd_teams(ns: argparse.Namespace, settings: Settings) -> int:
    async def work(store: Store) -> int:
        if ns.action == "create":
            team = await accounts.create_team(
                store, accounts.TeamCreate(name=ns.name, **_limit_fields(ns)), actor=cli_actor()
            )
            print(json.dumps(await accounts.team_view_now(store, team), indent=2))
        elif ns.action == "update":
            team = await accounts.update_team(
                store, ns.name, accounts.TeamLimits(**_limit_fields(ns)), actor=cli_actor()
            )
            print(json.dumps(await accounts.team_view_now(store, team), indent=2))
        elif ns.action == "delete":
            revoked = await accounts.delete_team(store, ns.name, force=ns.force, actor=cli_actor())
            print(f"deleted team {ns.name} (its ledger rows stay); revoked {revoked} key(s)")
        elif ns.action == "show":
            team = await accounts.get_team(store, ns.name)
            print(json.dumps(await accounts.team_view_now(store, team), indent=2))
        else:
            views = [await accounts.team_view_now(store, t) for t in await store.list_teams()]
            if ns.json:
                print(json.dumps({"data": views}, indent=2))
                return 0
            _print_rows(
                [_in_words(v) for v in views],
                TEAM_COLUMNS,
                empty="no teams yet: gateway teams create NAME",
            )
        return 0

    return await _with_store(settings, work)


async def cmd_keys(ns: argparse.Namespace, settings: Settings) -> int:
    async def work(store: Store) -> int:
        if ns.action == "create":
            spec = accounts.KeyCreate(team=ns.team, name=ns.name, **_limit_fields(ns))
            issued = await accounts.create_key(store, spec, actor=cli_actor())
            print(f"key id: {issued.record.id}  team: {issued.record.team_name}")
            print("key (shown this once, store it now):")
            print(issued.secret)
        elif ns.action == "revoke":
            key = await accounts.revoke_key(store, ns.id, actor=cli_actor())
            print(f"revoked {key.id} at {key.revoked_at}")
        elif ns.action == "rotate":
            issued = await accounts.rotate_key(store, ns.id, actor=cli_actor())
            print(f"key id: {issued.record.id}  team: {issued.record.team_name}")
            print("new key (shown this once; the old one no longer works):")
            print(issued.secret)
        elif ns.action == "show":
            key = await accounts.get_key(store, ns.id)
            print(json.dumps(await accounts.key_view_now(store, key), indent=2))
        else:
            keys = await accounts.list_keys(store, ns.team)
            views = [await accounts.key_view_now(store, k) for k in keys]
            if ns.json:
                print(json.dumps({"data": views}, indent=2))
                return 0
            whose = f" for team {ns.team}" if ns.team else ""
            _print_rows(
                [_in_words(v) for v in views],
                KEY_COLUMNS,
                empty=f"no keys{whose} yet: gateway keys create --team TEAM",
            )
        return 0

    return await _with_store(settings, work)


def _group(value: str) -> str:
    if value in GROUPS or (value.startswith("tag:") and TAG_KEY.match(value[4:])):
        return value
    raise argparse.ArgumentTypeError(f"not one of {', '.join(GROUPS)}, nor tag:KEY")


async def cmd_reconcile(ns: argparse.Namespace, settings: Settings) -> int:
    """The ledger beside upstream's Costs API; exit 1 when they differ beyond the tolerance."""

    async def work(store: Store) -> int:
        result = await reconcile(settings, store, ns.since, ns.until, Decimal(ns.tolerance))
        if ns.json:
            print(json.dumps(result, indent=2))
        else:
            print(
                f"{result['since']} to {result['until']}: ledger ${result['ledger_usd']},"
                f" upstream ${result['upstream_usd']}, {result['compared']} day-model pairs"
            )
            _print_rows(
                result["differences"],
                ("day", "model", "ledger_usd", "upstream_usd", "difference_usd"),
                empty=f"no differences beyond ${result['tolerance_usd']}",
            )
            if result["image_differences"]:
                _print_rows(
                    result["image_differences"],
                    ("day", "model", "ledger_images", "upstream_images"),
                )
        return 1 if result["differences"] or result["image_differences"] else 0

    return await _with_store(settings, work)


async def cmd_audit(ns: argparse.Namespace, settings: Settings) -> int:
    """The audit trail, newest first: who changed what, before and after."""

    async def work(store: Store) -> int:
        entries = [entry_view(row) for row in await store.audit_entries(ns.limit, ns.action)]
        if ns.json:
            print(json.dumps({"data": entries}, indent=2))
            return 0
        rows = [
            {**entry, "before": json.dumps(entry["before"]), "after": json.dumps(entry["after"])}
            for entry in entries
        ]
        _print_rows(
            rows,
            ("at", "actor", "action", "target", "before", "after"),
            empty="no changes recorded yet",
        )
        return 0

    return await _with_store(settings, work)


async def cmd_usage(ns: argparse.Namespace, settings: Settings) -> int:
    async def work(store: Store) -> int:
        report = await usage_report(
            store,
            team=ns.team,
            key=ns.key,
            model=ns.model,
            since=ns.since,
            until=ns.until,
            group_by=ns.group_by,
            tag=ns.tag,
            user=ns.user,
        )
        if ns.format == "json":
            print(json.dumps(report.as_json(), indent=2))
        elif ns.format == "csv":
            print(report.as_csv(), end="")
        else:
            columns = (
                ns.group_by,
                "requests",
                "refused",
                "images",
                "image_output_tokens",
                "cost_usd",
                "saved_usd",
            )
            _print_rows([*report.rows, {ns.group_by: "TOTAL", **report.total}], columns)
        return 0

    return await _with_store(settings, work)


async def cmd_cache(ns: argparse.Namespace, settings: Settings) -> int:
    """The same ResponseCache the server uses, on the same data dir and store."""
    from gateway.cache.cache import ResponseCache

    async def work(store: Store) -> int:
        cache = ResponseCache(settings, store)
        await cache.start()
        if ns.action == "stats":
            stats = await cache.stats()
            if ns.json:
                print(json.dumps(stats, indent=2))
                return 0
            for name in ("entries", "bodies", "bytes", "hits", "max_bytes", "ttl_s", "scope"):
                print(f"{name:>10}: {stats[name]}")
            print()
            _print_rows(
                stats["teams"],
                ("team", "entries", "bytes", "hits", "saved_usd"),
                empty="nothing cached yet",
            )
        elif ns.action == "purge":
            if not (ns.team or ns.key or ns.all):
                print("error: name --team, --key, or --all", file=sys.stderr)
                return 2
            purged = await accounts.purge_cache(
                store, cache, team=ns.team, key=ns.key, actor=cli_actor()
            )
            print(f"purged {purged} entries")
        else:
            result = await cache.verify()
            print(
                f"checked {result['checked']} bodies: {result['corrupt']} missing or corrupt,"
                f" {result['entries_dropped']} entries dropped"
            )
        return 0

    return await _with_store(settings, work)


def cmd_prices(ns: argparse.Namespace, settings: Settings) -> int:
    """Show the price table, or check it and tell the running gateway to load it (SIGHUP)."""
    try:
        table = load_prices(settings.prices)
    except PriceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if ns.action == "reload":
        pid = read_pid(settings)
        if pid is None:
            print(
                f"price file {settings.prices} is valid (version {table.version}); no running"
                f" gateway found (no pid file in {settings.data_dir})",
                file=sys.stderr,
            )
            return 1
        os.kill(pid, signal.SIGHUP)
        print(
            f"price file {settings.prices} is valid (version {table.version});"
            f" asked the gateway (pid {pid}) to load it"
        )
        return 0
    if ns.json:
        document = {
            "path": str(settings.prices),
            "version": table.version,
            "models": describe(table),
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"price table {settings.prices}, version {table.version} (USD per 1M tokens)")
    # Fits a 100-column terminal; --wide shows every column.
    columns: tuple[str, ...] = (
        "model",
        "billing",
        "text_input",
        "image_input",
        "image_output",
        "text_output",
    )
    if ns.wide:
        columns = (
            *columns,
            "cached_text_input",
            "cached_image_input",
            "per_image",
            "batch",
            "aliases",
            "source",
        )
    _print_rows(describe(table), columns)
    if not ns.wide:
        print(
            "(per-image prices, cached rates, batch shares, aliases and sources:"
            " gateway prices --wide)"
        )
    return 0


def cmd_config(ns: argparse.Namespace, settings: Settings) -> int:
    """The settings in force, one per line, with where each came from; or the shipped example."""
    if ns.example:
        sys.stdout.write(SHIPPED_CONFIG_EXAMPLE.read_text("utf-8"))
        return 0
    path = config_file()
    read = f"read from {path.resolve()}" if path.is_file() else f"{path} not found: not read"
    print(f"# config file: {read}; environment variables GATEWAY_* come first")
    from_file = TomlConfigSettingsSource(Settings, toml_file=path)() if path.is_file() else {}
    for name, value in settings.model_dump().items():
        variable = f"GATEWAY_{name.upper()}"
        source = "env" if variable in os.environ else "file" if name in from_file else "default"
        if isinstance(value, SecretStr):
            value = "(set)"
        elif isinstance(value, str) and "://" in value:
            value = safe_url(value)  # a password in a database URL, say
        shown = "" if value is None else ",".join(value) if isinstance(value, list) else value
        print(f"{variable}={shown}  # {source}")
    data_dir = settings.data_dir.resolve()
    state = "exists" if data_dir.is_dir() else "does not exist yet"
    print(f"# data dir: {data_dir} ({state})")
    print(f"# store: {safe_url(settings.resolved_database_url)}")
    return 0


# One exit status per kind of outcome, so scripts can tell them apart.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_CODES_HELP = (
    "exit status: 0 done; 1 failed (a server that cannot start, a reconciliation that found"
    " differences); 2 usage error (an option or value that is not valid); 3 not found (a team,"
    " key or the store itself); 4 refused (a name taken, a revoked key, a team with live keys)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Caching, cost-accounting proxy for the OpenAI Images API.",
        epilog=EXIT_CODES_HELP,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gateway")
    serve.add_argument("--host", help="address to listen on (setting GATEWAY_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (setting GATEWAY_PORT)")
    serve.add_argument(
        "--workers", type=_worker_count, help="worker processes, 1-64 (setting GATEWAY_WORKERS)"
    )
    # What the supervisor starts its workers with; not for people.
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    quick = commands.add_parser(
        "quickstart",
        help="what `make run` runs: migrate, issue (or rotate) the quickstart key, and serve"
        " (with the simulator when no upstream key is set)",
    )
    quick.add_argument(
        "--simulator-port",
        type=int,
        help="where the built-in simulator listens (setting GATEWAY_SIMULATOR_PORT, 8090)",
    )

    commands.add_parser("migrate", help="apply pending database migrations")

    teams = commands.add_parser("teams", help="manage teams").add_subparsers(
        dest="action", required=True
    )
    for action, what in (("create", "create a team"), ("update", "change a team's limits")):
        sub = teams.add_parser(action, help=what)
        sub.add_argument("name", help="the team's name (letters, digits, . _ -)")
        _add_team_options(sub)
    teams.add_parser("show", help="one team, with its spend (JSON)").add_argument(
        "name", help="the team's name"
    )
    teams.add_parser("list", help="every team with its budget and spend").add_argument(
        "--json", action="store_true", help="JSON, every field"
    )
    delete = teams.add_parser(
        "delete", help="delete a team (refused while it has live keys); its ledger rows stay"
    )
    delete.add_argument("name", help="the team's name")
    delete.add_argument("--force", action="store_true", help="revoke its live keys and delete")

    keys = commands.add_parser("keys", help="manage keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="issue a key for a team (printed once)")
    create.add_argument("--team", required=True, help="the team the key spends for")
    create.add_argument("--name", help="a label for people, e.g. ci")
    _add_limit_options(create)
    keys.add_parser("revoke", help="revoke a key at once").add_argument("id", help="key id")
    keys.add_parser(
        "rotate", help="a new secret for a key: same id, budgets and history; the old one stops"
    ).add_argument("id", help="key id")
    keys.add_parser("show", help="one key, with its spend (JSON)").add_argument("id", help="key id")
    key_list = keys.add_parser("list", help="keys with their budgets, spend and what is left")
    key_list.add_argument("--team", help="only this team's keys")
    key_list.add_argument("--json", action="store_true", help="JSON, every field")

    usage = commands.add_parser("usage", help="spend and tokens from the ledger")
    usage.add_argument("--team", help="only this team")
    usage.add_argument("--key", help="only this key id")
    usage.add_argument("--model", help="only this model")
    usage.add_argument("--since", help="ISO date or date-time (UTC), inclusive")
    usage.add_argument("--until", help="ISO date or date-time (UTC), exclusive")
    usage.add_argument(
        "--group-by",
        type=_group,
        default="team",
        help=f"one row per this: {', '.join(GROUPS)}, or tag:KEY",
    )
    usage.add_argument("--tag", help="only requests tagged KEY:VALUE (X-Gateway-Tags)")
    usage.add_argument("--user", help="only requests whose body named this `user`")
    usage.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="output format"
    )

    recon = commands.add_parser(
        "reconcile", help="the ledger beside upstream's Costs API (exit 1 on a difference)"
    )
    recon.add_argument("--since", required=True, help="first day, YYYY-MM-DD (UTC)")
    recon.add_argument("--until", help="day after the last (default: through today)")
    recon.add_argument("--tolerance", default="0.01", help="USD a day-model pair may differ by")
    recon.add_argument("--json", action="store_true", help="JSON output")

    audit = commands.add_parser("audit", help="who changed what: the audit trail")
    audit.add_argument("--limit", type=int, default=50, help="the newest this many")
    audit.add_argument("--action", help="only this action (team.update, key.revoke, ...)")
    audit.add_argument("--json", action="store_true", help="JSON, with before and after whole")

    cache = commands.add_parser("cache", help="the response cache").add_subparsers(
        dest="action", required=True
    )
    cache.add_parser("stats", help="entries, bytes, hits and savings").add_argument(
        "--json", action="store_true", help="print JSON"
    )
    purge = cache.add_parser("purge", help="drop a team's or a key's entries (or --all)")
    purge.add_argument("--team", help="drop this team's entries")
    purge.add_argument("--key", help="drop the entries this key id stored")
    purge.add_argument("--all", action="store_true", help="drop every entry")
    cache.add_parser("verify", help="rehash every body; drop what is missing or corrupt")

    db = commands.add_parser("db", help="the store itself").add_subparsers(
        dest="action", required=True
    )
    copy = db.add_parser(
        "copy",
        help="copy every table to another store (e.g. SQLite to PostgreSQL), then check counts"
        " and totals; stop the gateway first",
    )
    copy.add_argument(
        "--from",
        dest="source",
        help="the store to read (default: this gateway's, GATEWAY_DATABASE_URL or the data dir)",
    )
    copy.add_argument("--to", dest="target", required=True, help="e.g. postgresql://u:p@h/db")
    copy.add_argument(
        "--overwrite", action="store_true", help="replace what a non-empty target holds"
    )

    prices = commands.add_parser("prices", help="show the price table; `reload` it in the server")
    prices.add_argument(
        "action",
        nargs="?",
        choices=["show", "reload"],
        default="show",
        help="show (the default), or check the file and tell the running gateway to load it",
    )
    prices.add_argument("--json", action="store_true", help="JSON, every column")
    prices.add_argument(
        "--wide", action="store_true", help="every column (per-image prices, aliases, cached rates)"
    )

    from simulator import add_simulator_arguments

    add_simulator_arguments(commands.add_parser("simulator", help="serve the fake Images API"))
    commands.add_parser("openapi", help="print the OpenAPI 3.1 description of the gateway's API")
    config = commands.add_parser(
        "config", help="the settings in force, and where they came from (secrets only as set/unset)"
    )
    config.add_argument(
        "--example",
        action="store_true",
        help="print a config file listing every setting with its default, to start one from",
    )
    return parser


ASYNC_COMMANDS: dict[str, Command] = {
    "migrate": cmd_migrate,
    "db": cmd_db,
    "teams": cmd_teams,
    "keys": cmd_keys,
    "usage": cmd_usage,
    "audit": cmd_audit,
    "reconcile": cmd_reconcile,
    "cache": cmd_cache,
}


# Commands that only read: on a store that does not exist they say so, rather than create an
# empty one (in whatever directory they were run from) and report zeros.
READ_ONLY = {("teams", "list"), ("teams", "show"), ("keys", "list"), ("keys", "show")}
READ_ONLY_COMMANDS = {"usage", "cache", "audit", "reconcile"}


def _missing_store(ns: argparse.Namespace, settings: Settings) -> str | None:
    reads = ns.command in READ_ONLY_COMMANDS or (ns.command, getattr(ns, "action", None)) in (
        READ_ONLY
    )
    if not reads or settings.database_url is not None:
        return None
    database = settings.data_dir / "gateway.db"
    if database.exists():
        return None
    return (
        f"no gateway data at {database} (run it from the directory the gateway serves from,"
        " or set GATEWAY_DATA_DIR)"
    )


def _serve(ns: argparse.Namespace, settings: Settings) -> int:
    from gateway.errors import CannotStart
    from gateway.quickstart import quickstart
    from gateway.runtime.server import serve, serve_worker

    given = {
        name: getattr(ns, name, None) for name in ("host", "port", "workers", "simulator_port")
    }
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    try:
        if ns.command == "quickstart":
            quickstart(settings)
            return 0
        return serve_worker(settings) if ns.worker else serve(settings)
    except CannotStart as exc:
        print(f"gateway cannot start: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `gateway prices | head`: the reader left; not an error to show
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.command == "openapi":
        from gateway.ops.openapi import rendered

        sys.stdout.write(rendered())
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: {_setting_problem(exc)}", file=sys.stderr)
        return 2
    if ns.command == "config":
        return cmd_config(ns, settings)
    if ns.command == "simulator":
        from simulator import config_from_args, run_simulator

        run_simulator(ns.host, ns.port, config_from_args(ns))
        return 0

    from gateway.ops.logs import configure_logging

    if ns.command in ("serve", "quickstart"):
        # A server logs to stdout (where containers collect it), one JSON line per request.
        configure_logging(settings.log_level, settings.log_format, sys.stdout)
    else:  # a command's own output goes to stdout; its logs must not mix with it
        configure_logging(settings.log_level, "text", sys.stderr)
    if ns.command in ("serve", "quickstart"):
        return _serve(ns, settings)
    if ns.command == "prices":
        return cmd_prices(ns, settings)
    missing = _missing_store(ns, settings)
    if missing is not None:
        print(f"error: {missing}", file=sys.stderr)
        return EXIT_NOT_FOUND
    try:
        return asyncio.run(ASYNC_COMMANDS[ns.command](ns, settings))
    except accounts.NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (Conflict, accounts.Revoked, accounts.HasLiveKeys) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except GatewayError as exc:  # a report's bad filter, say
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.status == 404:
            return EXIT_NOT_FOUND
        return EXIT_USAGE if exc.status == 400 else EXIT_FAILED
    except ValidationError as exc:  # an option's value, say --budget-usd -1
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]).replace("_", "-")
        print(
            f"error: {where}: {first['msg']}" if where else f"error: {first['msg']}",
            file=sys.stderr,
        )
        return 2


def _setting_problem(exc: ValidationError) -> str:
    """One line for a setting that does not validate: which, where it came from, what is wrong."""
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    variable = f"GATEWAY_{name.upper()}"
    where = variable if variable in os.environ else f"{name} in {config_file()}"
    return f"setting {where}: {first['msg']} (got {first.get('input')!r})"
