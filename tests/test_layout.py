"""Tests mirror the source: the modules with no test file of their own may only shrink. A new
module comes with its test file; a module that gets one leaves `tests/untested.txt`."""

from __future__ import annotations

from pathlib import Path

from tests.layout import candidates, untested

ALLOWED = Path(__file__).with_name("untested.txt")


def test_no_new_module_without_a_test_file_and_the_list_is_current() -> None:
    allowed = set(ALLOWED.read_text().split())
    missing = set(untested())
    assert missing <= allowed, f"modules with no test file: {sorted(missing - allowed)}"
    assert allowed <= missing, f"remove from untested.txt: {sorted(allowed - missing)}"


def test_a_module_is_covered_by_its_own_file_or_its_package_s() -> None:
    root = Path(__file__).resolve().parents[1]
    names = {str(c.relative_to(root)) for c in candidates(Path("gateway/cache/files.py"))}
    assert names == {
        "tests/test_cache_files.py",
        "tests/test_cache.py",
        "tests/cache/test_files.py",
        "tests/e2e/test_cache_files.py",
        "tests/e2e/test_cache.py",
    }
    names = {str(c.relative_to(root)) for c in candidates(Path("simulator/wire.py"))}
    assert names == {
        "tests/test_simulator_wire.py",
        "tests/test_simulator.py",
        "tests/e2e/test_simulator_wire.py",
        "tests/e2e/test_simulator.py",
    }
