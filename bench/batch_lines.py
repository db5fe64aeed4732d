"""How fast a batch's input file is checked, and how much memory that takes: a generated JSONL
file of --lines image lines (generations of mixed size, quality and n), checked by
gateway.batch.lines.check_file as an upload will be, timed over --repeat runs; RSS before and
after (psutil) and the peak (getrusage's ru_maxrss, which never goes down).

Run: .venv/bin/python bench/batch_lines.py [--lines 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.batch.lines import check_file
from gateway.pricing import load_prices
from gateway.settings import SHIPPED_PRICES

SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
QUALITIES = ("low", "medium", "high", "auto")
MODELS = ("gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini")


def write_lines(path: Path, count: int) -> int:
    with path.open("w") as out:
        for i in range(count):
            body = {
                "model": MODELS[i % len(MODELS)],
                "prompt": f"catalogue item {i}: a ceramic mug, studio light, white background",
                "size": SIZES[i % len(SIZES)],
                "quality": QUALITIES[(i // 4) % len(QUALITIES)],
                "n": 1 + i % 2,
            }
            line = {"custom_id": f"item-{i}", "method": "POST",
                    "url": "/v1/images/generations", "body": body}  # fmt: skip
            out.write(json.dumps(line) + "\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = load_prices(SHIPPED_PRICES)
    me = psutil.Process(os.getpid())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.jsonl"
        size = write_lines(path, args.lines)
        rss_before = me.memory_info().rss
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        seconds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            checked = check_file(path, table)
            seconds.append(time.perf_counter() - started)
            del checked
        rss_after = me.memory_info().rss
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mib = 1024 * 1024
    result = {
        "lines": args.lines,
        "file_mib": round(size / mib, 1),
        "check_s_median": round(statistics.median(seconds), 3),
        "check_s_runs": [round(s, 3) for s in seconds],
        "lines_per_s": round(args.lines / statistics.median(seconds)),
        "rss_before_mib": round(rss_before / mib, 1),
        "rss_after_mib": round(rss_after / mib, 1),
        "peak_growth_mib": round((peak_after - peak_before) / mib, 1),
    }
    print(json.dumps(result, indent=2))
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    (results / "batch_lines.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
