"""How much a newcomer must hold at once: the measures issue 23 asks for, taken the same way
before and after a change.

- modules and cross-module calls on a generation miss and a streaming miss (one request each,
  traced with `sys.setprofile` from send to last byte, then again with the cache's background
  store let finish);
- the writers of each part of the Flow (modules that assign to `flow.<part>` or its fields);
- import cycles, type-only imports included (strongly connected modules of the import graph);
- test files per source module (tests.layout).

Run: .venv/bin/python bench/shape.py [--json]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "gateway"
sys.path.insert(0, str(ROOT))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(GATEWAY.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Every import of a gateway module by another, wherever it is written (type-only too)."""
    modules = source_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


MUTATORS = frozenset({"append", "extend", "update", "add", "clear", "pop", "setdefault"})
# Parts that are objects with behaviour, not data: calling their methods writes no flow data.
BEHAVIOUR = frozenset({"services", "request", "client", "leader", "upstream"})


def _flow_part(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """The Flow part an expression reaches: `flow.part…` (or `self.flow.part…`), or a local
    bound to a part."""
    below: str | None = None
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Attribute):
            if node.attr == "flow" and below is not None:
                return below  # self.flow.part…
            if isinstance(node.value, ast.Name):
                return node.attr if node.value.id == "flow" else aliases.get(node.value.id)
            below = node.attr
        node = node.value
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    return None


def flow_writers() -> dict[str, list[str]]:
    """Per Flow part, the modules that write it: assign to `flow.part` or to anything under it,
    directly or through a local bound to it (`answer = flow.answer; answer.images = …`), or call
    a mutating method on it (append, update, …)."""
    writers: dict[str, set[str]] = defaultdict(set)
    for name, path in source_modules().items():
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            aliases: dict[str, str] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    value = node.value
                    for target in targets:
                        for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                            if isinstance(item, ast.Name) and value is not None:
                                part = (
                                    _flow_part(value, {})
                                    if isinstance(value, ast.Attribute)
                                    else None
                                )
                                if (
                                    part is not None
                                    and isinstance(value, ast.Attribute)
                                    and isinstance(value.value, ast.Name)
                                    and value.value.id == "flow"
                                ):
                                    aliases[item.id] = part
                                continue
                            part = _flow_part(item, aliases)
                            if part is not None:
                                writers[part].add(name)
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in MUTATORS
                ):
                    part = _flow_part(node.func.value, aliases)
                    if part is not None and part not in BEHAVIOUR:
                        writers[part].add(name)
    return {part: sorted(mods) for part, mods in sorted(writers.items())}


def tests_per_module() -> dict[str, int]:
    from tests import layout

    total = len(layout.modules())
    missing = len(layout.untested())
    return {"modules": total, "with_a_test_file": total - missing, "without": missing}


# --- one request traced ------------------------------------------------------------------------


class Tracer:
    """Counts calls between gateway modules (caller and callee both in gateway/)."""

    def __init__(self) -> None:
        self.modules: set[str] = set()
        self.edges = 0
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.prefix = str(GATEWAY) + os.sep
        self._names: dict[str, str | None] = {}

    def _module(self, filename: str) -> str | None:
        if filename not in self._names:
            self._names[filename] = (
                module_name(Path(filename)) if filename.startswith(self.prefix) else None
            )
        return self._names[filename]

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee = self._module(frame.f_code.co_filename)
        if callee is None:
            return
        self.modules.add(callee)
        caller = frame.f_back
        while caller is not None:
            name = self._module(caller.f_code.co_filename)
            if name is not None:
                if name != callee:
                    self.edges += 1
                    self.pairs[(name, callee)] += 1
                return
            if caller.f_code.co_filename.startswith(str(ROOT / "simulator")):
                return
            caller = caller.f_back


async def trace_one(stream: bool, show: bool = False) -> dict[str, int]:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from gateway.app import create_app
    from gateway.settings import Settings

    try:
        from gateway.admin import accounts
        from gateway.runtime.state import SERVICES
    except ImportError:  # the layout before issue 23 (to measure it the same way)
        from gateway.state import SERVICES  # type: ignore[import-not-found,no-redef]

        from gateway import accounts  # type: ignore[attr-defined,no-redef]
    from simulator import SimulatorConfig, create_simulator_app

    with tempfile.TemporaryDirectory() as tmp:
        upstream = TestServer(create_simulator_app(SimulatorConfig(api_key="sk-up")))
        await upstream.start_server()
        settings = Settings(
            data_dir=Path(tmp), upstream_api_key="sk-up", upstream_url=str(upstream.make_url("/v1"))
        )
        gateway = TestServer(create_app(settings))
        await gateway.start_server()
        store = gateway.app[SERVICES].store
        await accounts.create_team(store, accounts.TeamCreate(name="t"))
        key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
        body: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a shape", "size": "1024x1024"}
        if stream:
            body |= {"stream": True, "partial_images": 1}
        async with aiohttp.ClientSession() as session:
            url = str(gateway.make_url("/v1/images/generations"))
            headers = {"Authorization": f"Bearer {key}"}
            # One request first, so what is imported or warmed once is not counted.
            warm = {**body, "prompt": "warming up"}
            async with session.post(url, json=warm, headers=headers) as response:
                await response.read()
            await gateway.app[SERVICES].cache.drain()
            tracer = Tracer()
            sys.setprofile(tracer)
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    assert response.headers["x-gateway-cache"] == "miss", response.headers
                request_only = (len(tracer.modules), tracer.edges)
                if show:
                    for (caller, callee), count in sorted(tracer.pairs.items()):
                        print(f"  {count:3} {caller} -> {callee}")
                await gateway.app[SERVICES].cache.drain()
            finally:
                sys.setprofile(None)
        await gateway.close()
        await upstream.close()
    return {
        "modules": request_only[0],
        "cross_module_calls": request_only[1],
        "modules_with_store": len(tracer.modules),
        "cross_module_calls_with_store": tracer.edges,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--calls", action="store_true", help="list the cross-module calls")
    args = parser.parse_args()
    found_cycles = cycles(import_graph())
    report: dict[str, Any] = {
        "generation_miss": asyncio.run(trace_one(stream=False, show=args.calls)),
        "streaming_miss": asyncio.run(trace_one(stream=True, show=args.calls)),
        "flow_writers": flow_writers(),
        "import_cycles": [len(c) for c in found_cycles],
        "cycle_members": found_cycles,
        "tests_per_module": tests_per_module(),
        "top_level_modules": len([p for p in GATEWAY.glob("*.py") if p.name != "__init__.py"]),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name in ("generation_miss", "streaming_miss"):
        print(f"{name}: {report[name]}")
    print("writers of each Flow part:")
    for part, mods in report["flow_writers"].items():
        print(f"  {part:18} {len(mods)}  {', '.join(m.removeprefix('gateway.') for m in mods)}")
    print(f"import cycles (type imports included): {report['import_cycles']}")
    for members in found_cycles:
        print("  " + " ".join(m.removeprefix("gateway.") for m in members))
    print(f"tests per module: {report['tests_per_module']}")
    print(f"top-level modules in gateway/: {report['top_level_modules']}")


if __name__ == "__main__":
    main()
