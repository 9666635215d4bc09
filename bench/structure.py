"""What a newcomer must read and a maintainer must keep: lines per top-level package and the
modules caught in import cycles (strongly connected components of the import graph, grimp's).

    .venv/bin/python -m bench.structure
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

PACKAGES = ("cloud", "edge", "devstack", "giftwheel", "bench", "tests")
ROOT = Path(__file__).resolve().parents[1]


def lines(package: str) -> int:
    return sum(len(path.read_text().splitlines()) for path in (ROOT / package).rglob("*.py"))


def cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.setrecursionlimit(10_000)
    print("lines of Python per top-level package:")
    for package in PACKAGES:
        print(f"  {package:10s} {lines(package):6d}")
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    in_cycles = 0
    print("import cycles:")
    for package in PACKAGES:
        members = {m for m in graph.modules if m == package or m.startswith(package + ".")}
        for component in cycles(graph, members):
            in_cycles += len(component)
            print("  " + ", ".join(component))
    print(f"modules in import cycles: {in_cycles}")


if __name__ == "__main__":
    main()
