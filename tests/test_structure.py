"""The package's shape, read from its own imports (every import, in functions and under
TYPE_CHECKING too): no import circles, no private names taken across modules, stages that import
only downward, a CLI that only parses, and no room that outgrows the house."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "biofuse"

#: the layers, bottom first: a module may import its own layer and the ones below it, never above
LAYERS = [
    {"errors", "version", "registry"},
    {"files"},
    {"modality", "options", "locks", "references", "arguments"},
    {"cache", "heads"},
    {"fusion"},
    {"pipeline.data", "pipeline.encoders"},
    {"pipeline.extract", "examples"},
    {"pipeline.train"},
    {"pipeline.finetune"},
    {"pipeline.report"},
    {"pipeline.experiment"},
    {"api"},
    {"cli", "cli_cache", "cli_experiments", "cli_options", "pipeline"},
    {"root"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
#: what the command line may take from the pipeline: option classes, registries and vocabulary
#: for its flags and output; the work itself it asks of biofuse.api
CLI_MAY_IMPORT = {"dogma", "splits", "DataSpec", "ENCODERS", "ExtractOptions", "FitOptions",
                  "FinetuneOptions", "format_metrics", "format_report"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports() -> list[tuple[str, str, str]]:
    """(importing module, imported module, name taken) for every import of a biofuse module."""
    out = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] == "biofuse":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    out.append((module, full if full in MODULES else node.module, alias.name))
            elif isinstance(node, ast.Import):
                out += [(module, a.name, "") for a in node.names if a.name.startswith("biofuse")]
    return out


def part(module: str) -> str:
    """The layer part a module belongs to: its pipeline stage, or its top-level name."""
    names = module.split(".")
    if names[:2] == ["biofuse", "pipeline"]:
        return "pipeline" if len(names) == 2 else f"pipeline.{names[2]}"
    return "root" if len(names) == 1 else names[1]


def test_every_module_has_a_layer():
    assert not {part(m) for m in MODULES} - set(RANK)


def test_no_import_circles():
    graph = defaultdict(set)
    for a, b, _ in imports():
        if a != b and b != "biofuse":  # the package root's lazy API is the top, not a module
            graph[a].add(b)
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_no_private_name_is_imported_across_modules():
    private = [f"{a} takes {name} from {b}" for a, b, name in imports()
               if name.startswith("_") and not name.startswith("__")]
    assert not private


def test_stages_import_downward_only():
    upward = [f"{a} ({part(a)}) imports {b} ({part(b)})" for a, b, _ in imports()
              if b != "biofuse" and RANK[part(b)] > RANK[part(a)]]
    assert not upward


def test_the_command_line_only_parses_and_calls_the_api():
    taken = {(a, name) for a, b, name in imports()
             if part(a).startswith("cli") and part(b).startswith("pipeline")}
    assert {name for _, name in taken} <= CLI_MAY_IMPORT, sorted(taken)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_the_pipeline_is_a_package_of_stages():
    loose = [p.name for p in (PACKAGE / "pipeline").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside a stage package: {loose}"


@pytest.mark.parametrize("stage", sorted(p.name for p in (PACKAGE / "pipeline").iterdir()
                                         if (p / "__init__.py").is_file()))
def test_no_stage_holds_more_than_a_fifth_of_the_package(stage):
    total = sum(lines(p) for p in PACKAGE.rglob("*.py"))
    mine = sum(lines(p) for p in (PACKAGE / "pipeline" / stage).rglob("*.py"))
    assert mine <= 0.2 * total, f"pipeline/{stage} holds {mine} of {total} lines"
    doc = ast.get_docstring(ast.parse((PACKAGE / "pipeline" / stage / "__init__.py").read_text()))
    assert doc and "Takes in" in doc, f"pipeline/{stage}/__init__.py says not what flows in"


def test_no_module_is_past_400_lines():
    long = {module_name(p): lines(p) for p in PACKAGE.rglob("*.py") if lines(p) > 400}
    assert not long, f"split these: {long}"
