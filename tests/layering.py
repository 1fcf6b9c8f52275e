"""The layer order of masksearch's top-level parts, and a checker of every import between them.

Order, lowest first; a part imports only parts on a LOWER level (never one on its own level, never
upward):

    core  ->  search_tool, rewards, curriculum, engine  ->  backends, data  ->  env
          ->  eval, sft, viewer  ->  recipes  ->  cli

``engine`` is local generation (the continuous-batching engine over a transformers model); ``backends``
is verl's CPU support, whose ``hf`` rollout server is an adapter over the engine, hence one level up.

The root package (``masksearch/__init__.py``: ``cache_root``) counts as core. ``tests/``,
``benchmarks/`` and ``examples/`` are not parts: they may import anything.

What counts as an import of part ``x`` (``masksearch.x`` or ``masksearch.x.<...>``):

* Python, by AST: ``import masksearch.x``, ``from masksearch.x import ...``,
  ``from masksearch import x``, relative imports that leave the part; and string constants other
  than docstrings that are a module path (``"masksearch.x.y"``, ``"masksearch.x.y:attr"``, as given
  to ``import_module`` or after ``"-m"``), or that contain ``pkg://masksearch.x``,
  ``-m masksearch.x`` or ``import masksearch.x``;
* YAML: ``_target_: masksearch.x...`` and ``pkg://masksearch.x...``;
* shell scripts: ``-m masksearch.x`` and ``import``/``from masksearch.x``.

Comment lines of YAML and shell files are documentation, not imports.

Run ``python tests/layering.py [ROOT]`` to print the import-count table and any violation.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LEVELS: dict[str, int] = {
    "core": 0,
    "search_tool": 1,
    "rewards": 1,
    "curriculum": 1,
    "engine": 1,
    "backends": 2,
    "data": 2,
    "env": 3,
    "eval": 4,
    "sft": 4,
    "viewer": 4,
    "recipes": 5,
    "cli": 6,
}
ROOT_PART = "core"  # masksearch/__init__.py
PARTS = tuple(LEVELS)

_PARTS_RE = "|".join(PARTS)
_MODULE_STRING = re.compile(rf"^masksearch\.({_PARTS_RE})(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_][\w.]*)?$")
_EMBEDDED = re.compile(rf"(?:pkg://|-m\s+|import\s+|from\s+)masksearch\.({_PARTS_RE})\b")
_YAML = re.compile(rf"(?:_target_:\s*['\"]?|pkg://)masksearch\.({_PARTS_RE})\b")
_SHELL = re.compile(rf"(?:-m\s+|import\s+|from\s+)masksearch\.({_PARTS_RE})\b")


@dataclass(frozen=True)
class Edge:
    src: str  # importing part
    dst: str  # imported part
    file: str  # relative path
    line: int
    how: str  # "import" or "string"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.src} -> {self.dst} ({self.how})"


def part_of(rel: Path) -> str | None:
    """The part a file belongs to (``None``: not a part, e.g. tests/ or setup.py)."""
    if len(rel.parts) == 1:
        return ROOT_PART if rel.name == "__init__.py" else None
    return rel.parts[0] if rel.parts[0] in LEVELS else None


def _module_name(rel: Path) -> list[str]:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ["masksearch", *parts]


def _target_part(dotted: str) -> str | None:
    bits = dotted.split(".")
    if not bits or bits[0] != "masksearch":
        return None
    if len(bits) == 1:
        return ROOT_PART
    return bits[1] if bits[1] in LEVELS else ROOT_PART if bits[1] == "__init__" else None


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def python_imports(text: str, rel: Path) -> list[tuple[str, int, str]]:
    """``(imported part, line, how)`` for every masksearch import in one Python file."""
    tree = ast.parse(text, filename=str(rel))
    module = _module_name(rel)
    package = module if rel.name == "__init__.py" else module[:-1]
    found: list[tuple[str, int, str]] = []
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                part = _target_part(alias.name)
                if part:
                    found.append((part, node.lineno, "import"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                dotted = ".".join(base + ([node.module] if node.module else []))
            else:
                dotted = node.module or ""
            if dotted == "masksearch":
                for alias in node.names:
                    part = alias.name if alias.name in LEVELS else ROOT_PART
                    found.append((part, node.lineno, "import"))
            else:
                part = _target_part(dotted)
                if part:
                    found.append((part, node.lineno, "import"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            value = node.value.strip()
            match = _MODULE_STRING.match(value)
            parts = {match.group(1)} if match else set(_EMBEDDED.findall(value))
            for part in sorted(parts):
                found.append((part, node.lineno, "string"))
    return found


def text_imports(text: str, pattern: re.Pattern[str]) -> list[tuple[str, int, str]]:
    """``(imported part, line, "string")`` for a YAML or shell file (comment lines skipped)."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for part in pattern.findall(line):
            found.append((part, lineno, "string"))
    return found


def iter_part_files(root: Path):
    """``(relative path, part)`` of every .py, .yaml/.yml and .sh file of the parts under ``root``."""
    init = root / "__init__.py"
    if init.is_file():
        yield Path("__init__.py"), ROOT_PART
    for top in PARTS:
        folder = root / top
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix not in {".py", ".yaml", ".yml", ".sh"}:
                continue
            if "__pycache__" in path.parts:
                continue
            yield path.relative_to(root), top


def collect_edges(root: Path) -> list[Edge]:
    """Every import from one part to another (same-part imports are left out)."""
    edges = []
    for rel, src in iter_part_files(root):
        text = (root / rel).read_text(encoding="utf-8")
        if rel.suffix == ".py":
            found = python_imports(text, rel)
        elif rel.suffix == ".sh":
            found = text_imports(text, _SHELL)
        else:
            found = text_imports(text, _YAML)
        for dst, line, how in found:
            if dst != src:
                edges.append(Edge(src, dst, rel.as_posix(), line, how))
    return edges


def violations(edges: list[Edge]) -> list[str]:
    """One line per import that does not go strictly down the order."""
    out = []
    for e in edges:
        if LEVELS[e.dst] >= LEVELS[e.src]:
            kind = "same level" if LEVELS[e.dst] == LEVELS[e.src] else "upward"
            out.append(f"{e} [{kind}: {e.src} is level {LEVELS[e.src]}, {e.dst} is level {LEVELS[e.dst]}]")
    return out


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of two or more parts (Tarjan)."""
    graph: dict[str, set[str]] = {p: set() for p in PARTS}
    for e in edges:
        graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in PARTS:
        if v not in index:
            visit(v)
    return groups


def count_table(edges: list[Edge]) -> str:
    """Import counts, importing part (rows) x imported part (columns), parts in layer order."""
    counts = Counter((e.src, e.dst) for e in edges)
    short = {p: p if len(p) <= 8 else p[:8] for p in PARTS}
    width = max(len(p) for p in PARTS)
    lines = [" " * width + " | " + " ".join(f"{short[p]:>8}" for p in PARTS)]
    lines.append("-" * len(lines[0]))
    for src in PARTS:
        row = " ".join(f"{counts[(src, dst)] or '.':>8}" for dst in PARTS)
        lines.append(f"{src:<{width}} | {row}")
    return "\n".join(lines)


def report(root: Path) -> tuple[str, list[str], list[list[str]]]:
    """The table, the violations and the cycles of the tree at ``root``."""
    edges = collect_edges(root)
    return count_table(edges), violations(edges), cycles(edges)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    table, bad, loops = report(root)
    print("imports between parts (row imports column; same-part imports not counted):")
    print(table)
    for line in bad:
        print("VIOLATION", line)
    for group in loops:
        print("CYCLE", " <-> ".join(group))
    print(f"{len(bad)} violation(s), {len(loops)} cycle(s)")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
