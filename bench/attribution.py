"""Reports by tag and by end user over a large ledger: --rows ledger rows (10 projects, 3
environments, 200 users), written in bulk, then each report timed (median of --repeat runs):
grouped by `tag:project`, by `user`, and by `user` among one tag's rows; on SQLite and on a
throwaway PostgreSQL 15.

Run: .venv/bin/python bench/attribution.py [--rows 100000] [--repeat 7] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from batch import ledger_rows  # noqa: E402
from common import write_result  # noqa: E402

from gateway.accounting.usage_report import usage_report  # noqa: E402
from gateway.store import open_store  # noqa: E402

REPORTS = {
    "group_by tag:project": {"group_by": "tag:project"},
    "group_by user": {"group_by": "user"},
    "tag project:p3, group_by user": {"group_by": "user", "tag": "project:p3"},
}


async def bench(url: str, count: int, repeat: int) -> dict[str, Any]:
    store = open_store(url)
    await store.connect()
    try:
        await store.migrate()
        team = await store.create_team("bench")
        await store.create_key(
            key_id="key_bench", team_id=team.id, name=None, key_hash="b" * 64, prefix="sk-gw-b"
        )
        rows = [
            replace(
                row,
                team_id=team.id,
                batch_id=None,
                end_user=f"user{i % 200}",
                tags=json.dumps(
                    {"env": ("dev", "prod", "test")[i % 3], "project": f"p{i % 10}"}, sort_keys=True
                ),
            )
            for i, row in enumerate(ledger_rows(count))
        ]
        await store.record_many(rows)
        timings = {}
        for name, query in REPORTS.items():
            runs = []
            for _ in range(repeat):
                started = time.perf_counter()
                await usage_report(store, **query)
                runs.append(time.perf_counter() - started)
            timings[name] = round(statistics.median(runs) * 1000, 1)
    finally:
        await store.close()
    return {"rows": count, "median_ms": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gw-attr-") as directory:
        db = Path(directory) / "g.db"
        result["sqlite"] = asyncio.run(bench(f"sqlite:///{db}", args.rows, args.repeat))
    if not args.no_postgres:
        from tests.postgres_server import PostgresServer

        server = PostgresServer()
        server.start()
        try:
            url = asyncio.run(server.new_database())
            result["postgres"] = asyncio.run(bench(url, args.rows, args.repeat))
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    write_result("attribution", result)


if __name__ == "__main__":
    main()
