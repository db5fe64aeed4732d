"""Run every benchmark, then print one compact summary. Results: bench/results/*.json.

Run: .venv/bin/python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cache
import latency
import memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small counts and sizes, to check that everything runs"
    )
    ns = parser.parse_args()
    lat_args = ["--n", "100", "--warmup", "20", "--stream-n", "50", "--stream-warmup", "5"]
    mem_args = ["--images", "4", "--image-mib", "2", "--repeat", "1"]
    print("== latency ==", flush=True)
    lat = latency.main(lat_args if ns.quick else [])
    print("\n== memory ==", flush=True)
    mem = memory.main(mem_args if ns.quick else [])
    print("\n== cache ==", flush=True)
    cache_args = [
        "--seconds",
        "1",
        "--rounds",
        "1",
        "--latency-n",
        "20",
        "--memory-requests",
        "200",
    ]
    hits = cache.main([*cache_args, "--miss-n", "10"] if ns.quick else [])

    plain, stream = lat["non_streaming"], lat["stream_first_event"]
    print("\n== summary ==")
    print(
        f"added latency, non-streaming (n={plain['n_each']}):"
        f" p50 {plain['added_p50']:+.3f} ms, p99 {plain['added_p99']:+.3f} ms"
        f" (direct p50 {plain['direct_ms']['p50']:.3f} ms,"
        f" gateway p50 {plain['gateway_ms']['p50']:.3f} ms)"
    )
    print(
        f"added time to first SSE event (n={stream['n_each']}):"
        f" p50 {stream['added_p50']:+.3f} ms, p99 {stream['added_p99']:+.3f} ms"
        f" (direct p50 {stream['direct_ms']['p50']:.3f} ms,"
        f" gateway p50 {stream['gateway_ms']['p50']:.3f} ms)"
    )
    speeds = ", ".join(f"{r['gateway_mib_per_s']:.0f}" for r in mem["rounds"])
    print(
        f"gateway memory, edit of {mem['images']} x {mem['image_mib']:g} MiB:"
        f" peak minus idle max {mem['max_peak_minus_idle_mib']:.1f} MiB"
        f" (kernel VmHWM {mem['max_kernel_peak_minus_idle_mib']:.1f} MiB);"
        f" upload MiB/s per round: {speeds}"
    )
    through = hits["throughput"]
    print(
        f"cache hits of a {hits['body_bytes'] / 2**20:.1f} MiB body:"
        f" {through['gateway_hit']['rps']:.0f} req/s ({through['gateway_hit']['mb_s']:.0f} MB/s),"
        f" static file server {through['static']['rps']:.0f} req/s:"
        f" {through['ratio_static_over_gateway_rps']}x;"
        f" p50 {hits['latency_ms']['gateway_hit']['p50']:.2f} ms"
        f" (static {hits['latency_ms']['static']['p50']:.2f} ms);"
        f" +{hits['memory']['added_mib']} MiB RSS with 100 concurrent hits"
    )


if __name__ == "__main__":
    main()
