"""Gateway memory while it forwards one large multipart edit (default 16 images of 20 MiB each).

The images are random bytes behind a valid PNG signature and a 1024x1024 IHDR chunk, written to
temporary files; the client streams them from disk (aiohttp FormData with open files), so the
benchmark client never holds the upload in memory. A thread samples the gateway's RSS every
10 ms; the kernel's own high-water mark (VmHWM, reset before each upload) is read as well, since
a sampler can miss a short peak. For comparison, the same upload is also sent direct to the
simulator in each round (timing only).

Run: .venv/bin/python bench/memory.py [--images 16 --image-mib 20 --repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE_OFF, Stack, running_stack, write_result

MiB = 1024 * 1024
PROMPT = "add a small red hat"
UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=600)
SAMPLE_INTERVAL_S = 0.01
SAMPLER_MAX_S = 900.0


def png_header(width: int, height: int) -> bytes:
    """PNG signature plus a complete IHDR chunk (8-bit RGBA)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def write_image(path: Path, size: int) -> None:
    """A `size`-byte file: a 1024x1024 PNG header, then random bytes, written 1 MiB at a time."""
    header = png_header(1024, 1024)
    with path.open("wb") as out:
        out.write(header)
        left = size - len(header)
        while left > 0:
            out.write(os.urandom(min(MiB, left)))
            left -= MiB


class PeakSampler(threading.Thread):
    """Samples a process's RSS every SAMPLE_INTERVAL_S until stopped (or SAMPLER_MAX_S)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.stop_event = threading.Event()
        self.peak = 0
        self.samples = 0

    def run(self) -> None:
        deadline = time.monotonic() + SAMPLER_MAX_S
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                rss = self.process.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self.stop_event.wait(SAMPLE_INTERVAL_S)

    def finish(self) -> int:
        self.stop_event.set()
        self.join(timeout=5)
        return self.peak


def reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter of `pid` (Linux >= 4.0); False when not possible."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def read_hwm(pid: int) -> int | None:
    """The kernel's peak RSS (VmHWM) of `pid` in bytes, or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def steady_rss(pid: int, settle_s: float = 1.0) -> int:
    """RSS after letting the process settle for `settle_s`: the median of five samples."""
    time.sleep(settle_s)
    process = psutil.Process(pid)
    samples: list[int] = []
    for _ in range(5):
        samples.append(process.memory_info().rss)
        time.sleep(0.05)
    return sorted(samples)[2]


@dataclass
class Upload:
    seconds: float  # from sending the request to having read the whole answer
    sent_s: float  # until the client wrote the last byte of the request body
    usage: dict[str, Any]


async def _on_chunk_sent(_: Any, ctx: Any, __: Any) -> None:
    ctx.trace_request_ctx["last_sent"] = time.perf_counter()


def upload_session() -> aiohttp.ClientSession:
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(_on_chunk_sent)
    return aiohttp.ClientSession(timeout=UPLOAD_TIMEOUT, trace_configs=[trace])


async def post_edit(
    session: aiohttp.ClientSession, url: str, key: str, images: Sequence[Path]
) -> Upload:
    """Upload one multipart edit, streaming `images` from disk."""
    marks: dict[str, float] = {}
    with contextlib.ExitStack() as files:
        form = aiohttp.FormData()
        form.add_field("model", "gpt-image-1")
        form.add_field("prompt", PROMPT)
        form.add_field("quality", "low")
        for path in images:
            form.add_field(
                "image[]",
                files.enter_context(path.open("rb")),
                filename=path.name,
                content_type="image/png",
            )
        start = time.perf_counter()
        async with session.post(
            url + "/images/edits",
            data=form,
            trace_request_ctx=marks,
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            body = await resp.read()
            elapsed = time.perf_counter() - start
    if resp.status != 200:
        raise RuntimeError(f"{url} answered {resp.status}: {body[:300]!r}")
    usage = await asyncio.to_thread(_usage_of, body)
    return Upload(elapsed, marks.get("last_sent", start) - start, usage)


def _usage_of(body: bytes) -> dict[str, Any]:
    import json

    usage: dict[str, Any] = json.loads(body).get("usage") or {}
    return usage


async def one_round(
    stack: Stack,
    session: aiohttp.ClientSession,
    images: Sequence[Path],
    upload_mib: float,
    direct: bool,
) -> dict[str, Any]:
    pid = stack.gateway.pid
    idle = await asyncio.to_thread(steady_rss, pid)
    hwm_reset = reset_hwm(pid)
    sampler = PeakSampler(pid)
    cpu = psutil.Process(pid).cpu_times()
    sampler.start()
    try:
        upload = await post_edit(session, stack.gw_url, stack.key, images)
    finally:
        peak = sampler.finish()
    cpu_s = sum(psutil.Process(pid).cpu_times()[:2]) - sum(cpu[:2])
    hwm = read_hwm(pid) if hwm_reset else None
    after = await asyncio.to_thread(steady_rss, pid)
    result: dict[str, Any] = {
        "idle_rss_mib": round(idle / MiB, 1),
        "peak_rss_mib": round(peak / MiB, 1),
        "peak_minus_idle_mib": round((peak - idle) / MiB, 1),
        "kernel_peak_rss_mib": round(hwm / MiB, 1) if hwm else None,
        "kernel_peak_minus_idle_mib": round((hwm - idle) / MiB, 1) if hwm else None,
        "rss_after_mib": round(after / MiB, 1),
        "rss_samples": sampler.samples,
        "gateway_upload_s": round(upload.seconds, 3),
        "gateway_client_sent_s": round(upload.sent_s, 3),
        "gateway_mib_per_s": round(upload_mib / upload.seconds, 1),
        "gateway_cpu_s": round(cpu_s, 2),
        "usage": upload.usage,
    }
    if direct:
        plain = await post_edit(session, stack.sim_url, "sk-bench-direct", images)
        result["direct_upload_s"] = round(plain.seconds, 3)
        result["direct_client_sent_s"] = round(plain.sent_s, 3)
        result["direct_mib_per_s"] = round(upload_mib / plain.seconds, 1)
    return result


async def run(ns: argparse.Namespace, images: Sequence[Path]) -> dict[str, Any]:
    upload_mib = sum(p.stat().st_size for p in images) / MiB
    warmup_image = images[0].parent / "small.png"
    write_image(warmup_image, 4096)
    rounds = []
    with running_stack(["--latency-ms", "0"], CACHE_OFF) as stack:
        async with upload_session() as session:
            await post_edit(session, stack.gw_url, stack.key, [warmup_image])
            for i in range(ns.repeat):
                result = await one_round(stack, session, images, upload_mib, not ns.no_direct)
                print(format_round(i + 1, result), flush=True)
                rounds.append(result)
        spool_left = sorted(p.name for p in (stack.gateway_data_dir / "tmp").glob("*"))
        problems = stack.gateway.log_problems()
    for line in [*(f"spool file left behind: {n}" for n in spool_left), *problems][:10]:
        print(f"gateway: {line}")
    return {
        "spool_files_left": spool_left,
        "gateway_log_problems": problems,
        "images": len(images),
        "image_mib": ns.image_mib,
        "upload_mib": round(upload_mib, 1),
        "rounds": rounds,
        "max_peak_rss_mib": max(r["peak_rss_mib"] for r in rounds),
        "max_peak_minus_idle_mib": max(r["peak_minus_idle_mib"] for r in rounds),
        "max_kernel_peak_minus_idle_mib": max(
            (r["kernel_peak_minus_idle_mib"] or 0.0) for r in rounds
        ),
        "client_max_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB, 1
        ),
    }


def format_round(i: int, r: dict[str, Any]) -> str:
    text = (
        f"round {i}: gateway idle {r['idle_rss_mib']:.1f} MiB, peak {r['peak_rss_mib']:.1f} MiB"
        f" (+{r['peak_minus_idle_mib']:.1f}; kernel VmHWM +{r['kernel_peak_minus_idle_mib']}),"
        f" after {r['rss_after_mib']:.1f} MiB\n"
        f"  upload via gateway {r['gateway_upload_s']:.2f} s = {r['gateway_mib_per_s']:.0f} MiB/s"
        f" (client done sending at {r['gateway_client_sent_s']:.2f} s;"
        f" gateway CPU {r['gateway_cpu_s']:.2f} s)"
    )
    if "direct_upload_s" in r:
        text += (
            f"; direct {r['direct_upload_s']:.2f} s = {r['direct_mib_per_s']:.0f} MiB/s"
            f" (sent at {r['direct_client_sent_s']:.2f} s)"
        )
    return text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--image-mib", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-direct",
        action="store_true",
        help="skip the direct-to-simulator upload used for comparison",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ns = parse_args(argv)
    if not (1 <= ns.images <= 16 and 0 < ns.image_mib <= 50 and 1 <= ns.repeat <= 20):
        raise SystemExit("need 1..16 images of at most 50 MiB, and 1..20 repeats")
    with tempfile.TemporaryDirectory(prefix="gw-bench-images-") as tmp:
        images = [Path(tmp) / f"image{i:02}.png" for i in range(ns.images)]
        for path in images:
            write_image(path, int(ns.image_mib * MiB))
        result = asyncio.run(run(ns, images))
    print(
        f"max peak minus idle: {result['max_peak_minus_idle_mib']:.1f} MiB"
        f" (kernel VmHWM: {result['max_kernel_peak_minus_idle_mib']:.1f} MiB);"
        f" client max RSS {result['client_max_rss_mib']:.1f} MiB"
    )
    path = write_result("memory", {"args": vars(ns), **result})
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
