"""`python -m gateway simulator ...` with a larger request-body limit. Benchmarks only.

The simulator caps request bodies at 64 MiB (`gateway.simulator._MAX_BODY`), below one edit of
16 images of 20 MiB, so the memory benchmark starts the simulator through this wrapper, which
raises that cap and then runs the ordinary CLI.

Run: python bench/big_body_simulator.py MAX_BODY_MIB simulator --host ... --port ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import simulator
from gateway.cli import main

if __name__ == "__main__":
    if not hasattr(simulator, "_MAX_BODY"):
        raise SystemExit("gateway.simulator._MAX_BODY is gone; update bench/big_body_simulator.py")
    simulator._MAX_BODY = int(float(sys.argv[1]) * 1024 * 1024)
    raise SystemExit(main(sys.argv[2:]))
