"""The simulator is an independent oracle: nothing of the gateway is imported by it, so a test
that checks the gateway against the simulator never checks the gateway against itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SIMULATOR = Path(__file__).resolve().parents[1] / "simulator"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_simulator_module_imports_the_gateway() -> None:
    modules = sorted(SIMULATOR.glob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        gateway = {name for name in imported_modules(path) if name.split(".")[0] == "gateway"}
        assert not gateway, f"{path.name} imports {sorted(gateway)}"


def test_running_the_simulator_loads_nothing_of_the_gateway() -> None:
    probe = (
        "import sys, simulator;"
        " app = simulator.create_simulator_app();"
        " print(sorted(m for m in sys.modules if m.split('.')[0] == 'gateway'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
