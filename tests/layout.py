"""Which source modules have a unit-test file of their own (tests mirror the source).

A module `gateway/a/b.py` is covered by `tests/test_a_b.py`, `tests/a/test_b.py` or, for a
package, by the package's file `tests/test_a.py`; `simulator/x.py` likewise by
`tests/test_simulator_x.py` or `tests/test_simulator.py`. A module whose honest test needs real
servers or processes (Redis, PostgreSQL, S3, the CLI, a whole gateway) has its file, named the
same, under `tests/e2e/` instead. `make test` prints the modules that have
none; `test_layout.py` keeps that list from growing (a new module comes with its test file).

Run: .venv/bin/python -m tests.layout
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PACKAGES = ("gateway", "simulator")


def candidates(module: Path) -> list[Path]:
    """The test files that would cover `module` (a path relative to the repository)."""
    found = _unit_candidates(module)
    return found + [TESTS / "e2e" / path.name for path in found if path.parent == TESTS]


def _unit_candidates(module: Path) -> list[Path]:
    parts = list(module.with_suffix("").parts)
    top, inner = parts[0], [p for p in parts[1:] if p != "__init__"]
    if top == "gateway":
        names = ["_".join(inner)] if inner else []
        if len(inner) > 1:
            names.append(inner[0])  # the package's own test file
        found = [TESTS / f"test_{name}.py" for name in names]
        if len(inner) > 1:
            found.append(TESTS / inner[0] / f"test_{'_'.join(inner[1:])}.py")
        return found
    names = ["_".join([top, *inner]), top]
    return [TESTS / f"test_{name}.py" for name in names]


def modules() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if path.name in ("__init__.py", "__main__.py") and path.stat().st_size < 2000:
                continue  # re-exports and entry points: nothing of their own to test
            found.append(relative)
    return found


def untested() -> list[str]:
    return [str(m) for m in modules() if not any(c.exists() for c in candidates(m))]


def main() -> None:
    missing = untested()
    print(f"modules with no test file of their own ({len(missing)} of {len(modules())}):")
    for module in missing:
        print(f"  {module}")


if __name__ == "__main__":
    main()
