"""The Batch API at scale, 50,000 lines by default:

1. upload: a generated JSONL file posted to a running gateway (its own process, in front of the
   simulator) through `POST /v1/files`, as the SDK does; the wall time, and the gateway's RSS
   before and its high-water mark after (VmRSS and VmHWM from /proc: the file is spooled and
   checked line by line, never held whole);
2. reading the results: a generated output file of as many lines read by the settlement's reader
   (results.read_results), lines per second;
3. writing the rows: as many ledger rows written by the store's bulk write (`record_many`, a few
   hundred rows to a transaction) on SQLite and on a throwaway PostgreSQL 15, rows per second.

Run: .venv/bin/python bench/batch.py [--lines 50000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from batch_lines import write_lines  # noqa: E402
from common import running_stack  # noqa: E402

from gateway.batch.results import Source, read_results  # noqa: E402
from gateway.store import open_store  # noqa: E402
from gateway.store.base import LedgerRow  # noqa: E402

MIB = 1024 * 1024


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


def bench_upload(lines: int, tmp: Path) -> dict[str, Any]:
    path = tmp / "in.jsonl"
    size = write_lines(path, lines)
    body, boundary = multipart(path)
    with running_stack() as stack:
        before = proc_memory(stack.gateway.pid)
        request = urllib.request.Request(
            f"{stack.gateway.base_url}/v1/files",
            data=body,
            headers={
                "Authorization": f"Bearer {stack.key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
        seconds = time.perf_counter() - started
        after = proc_memory(stack.gateway.pid)
    return {
        "lines": lines,
        "file_mib": round(size / MIB, 1),
        "upload_and_check_s": round(seconds, 2),
        "file_id": answer["id"],
        "gateway_rss_before_mib": round(before["VmRSS"] / MIB, 1),
        "gateway_rss_after_mib": round(after["VmRSS"] / MIB, 1),
        "gateway_peak_growth_mib": round((after["VmHWM"] - before["VmHWM"]) / MIB, 1),
    }


def write_output(path: Path, lines: int) -> None:
    usage = {"input_tokens": 20, "input_tokens_details": {"text_tokens": 20, "image_tokens": 0},
             "output_tokens": 272}  # fmt: skip
    with path.open("w") as out:
        for i in range(lines):
            body = {"created": 1, "data": [{"b64_json": "A" * 512}], "usage": usage}
            response = {"status_code": 200, "request_id": f"req_{i}", "body": body}
            item = {"id": f"r{i}", "custom_id": f"item-{i}", "response": response, "error": None}
            out.write(json.dumps(item) + "\n")


def bench_reading(lines: int, tmp: Path) -> dict[str, Any]:
    path = tmp / "out.jsonl"
    write_output(path, lines)
    started = time.perf_counter()
    count = sum(1 for _ in read_results(path, Source.OUTPUT))
    seconds = time.perf_counter() - started
    return {"lines": count, "read_s": round(seconds, 2), "lines_per_s": round(count / seconds)}


def ledger_rows(lines: int) -> list[LedgerRow]:
    base = LedgerRow(
        request_id="", created_at="2026-12-06T12:00:00.000+00:00", day="2026-12-06",
        week="2026-11-30", month="2026-12", key_id="key_bench", team_id=1,
        endpoint="generations", model="gpt-image-1-mini", size="1024x1024", quality="low", n=None,
        stream=False, status=200, outcome="ok", cache_status="miss", text_input_tokens=20,
        cached_text_input_tokens=0, image_input_tokens=0, cached_image_input_tokens=0,
        image_output_tokens=272, text_output_tokens=0, images=1, estimate_nanos=1_200_000,
        cost_nanos=1_108_000, saved_nanos=0, latency_ms=0.0, upstream_request_id="req",
        price_version="bench", reservation_id=None, batch_id="batch_bench",
    )  # fmt: skip
    return [replace(base, request_id=f"batch_bench/{i}", custom_id=str(i)) for i in range(lines)]


async def bench_rows(url: str, lines: int) -> dict[str, Any]:
    store = open_store(url)
    await store.connect()
    try:
        await store.migrate()
        team = await store.create_team("bench")
        await store.create_key(
            key_id="key_bench", team_id=team.id, name=None, key_hash="b" * 64, prefix="sk-gw-b"
        )
        rows = [replace(row, team_id=team.id) for row in ledger_rows(lines)]
        started = time.perf_counter()
        await store.record_many(rows)
        seconds = time.perf_counter() - started
        totals = await store.totals()
    finally:
        await store.close()
    assert totals["ledger"] == lines, totals
    return {"rows": lines, "write_s": round(seconds, 2), "rows_per_s": round(lines / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gw-batch-") as directory:
        tmp = Path(directory)
        result["upload"] = bench_upload(args.lines, tmp)
        result["read_results"] = bench_reading(args.lines, tmp)
        db = tmp / "rows.db"
        result["rows_sqlite"] = asyncio.run(bench_rows(f"sqlite:///{db}", args.lines))
        if not args.no_postgres:
            from tests.postgres_server import PostgresServer

            server = PostgresServer()
            server.start()
            try:
                url = asyncio.run(server.new_database())
                result["rows_postgres"] = asyncio.run(bench_rows(url, args.lines))
            finally:
                server.stop()
    print(json.dumps(result, indent=2))
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    (results / "batch.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
