"""The package's layers go one way: a module imports only its own layer and the layers below it (issue 13, part 8).

The contract is `LAYERS`, bottom first. Every subpackage and top-level module of archsim (and `archsim.kernels`,
the repository's `kernels/`) must sit in one layer, so a new one fails here until it is placed. Every import
counts, wherever it is written: at the top, inside a function (a lazy import is still a dependency) or under `if
TYPE_CHECKING:` (the annotation still names the higher layer); so does a module named by a string that is
imported at run time (`importlib.import_module("archsim.x.y")`, `importlib.resources.files("archsim.x")`).
`KNOWN` lists the violations left for a later change, each with the file that must change; an entry that no longer
matches an import fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"archsim": ROOT / "archsim", "archsim.kernels": ROOT / "kernels"}  # import root -> folder

LAYERS = (  # bottom first
    # "archsim": __init__.py
    {"archsim", "errors", "frozen", "limits", "memo", "outputs", "record", "spec_files", "kernels"},
    {"workload"},  # the model-size vocabulary and workload specs; reads only errors and limits
    {"cascade"},  # cascade.bind reads a Workload's params
    {"arch"},  # hardware descriptions: Architecture, GPU, PIMSpec
    {"mapping"},  # the mapper takes an evaluator, so it needs no model
    {"library", "workload_patterns"},  # finds specs by name and loads the cascade, arch, mapping and workload kinds;
    # per-head attention pattern maps (workload data found through the library)
    {"model"},  # analytical, event, DRAM and GPU models
    {"point", "gpu"},  # a design point through the models; GPU presets, calibration and validation of the model
    {"systems"},
    {"dse"},
    {"report"},
    {"commands", "cli", "__main__"},
)

# (importing module, imported module) -> why it is still there and what removes it.
KNOWN: dict[tuple[str, str], str] = {}

_MODULE_NAME = re.compile(r"archsim(\.\w+)+")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for root_name, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = [root_name, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported archsim module, line) for every import in the file, at any depth, and every string naming one."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module) if p)
            # `from archsim.x import y`: y may be a module (archsim.x.y) or a name defined in archsim.x
            found += [(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target, node.lineno)
                      for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value):
            name = node.value
            while name not in modules and "." in name:  # "archsim.dse.spec.sweep_from_dict" names a function
                name = name.rpartition(".")[0]
            if name != "archsim":
                found.append((name, node.lineno))
    return [(name, line) for name, line in found if name.startswith("archsim")]


def _layer(module: str) -> int:
    unit = module.split(".")[1] if "." in module else module
    return next(i for i, units in enumerate(LAYERS) if unit in units)


def test_every_module_sits_in_a_layer() -> None:
    placed = set().union(*LAYERS)
    units = {name.split(".")[1] if "." in name else name for name in _modules()}
    assert units - placed == set(), "place these in LAYERS (tests/test_layers.py)"
    assert placed - units == set(), "LAYERS names modules that do not exist"


def test_no_layer_imports_a_higher_one() -> None:
    modules = _modules()
    upward, seen = [], set()
    for module, path in sorted(modules.items()):
        for imported, line in _imports(module, path, modules):
            if _layer(imported) > _layer(module):
                if (module, imported) in KNOWN:
                    seen.add((module, imported))
                else:
                    upward.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {imported}")
    assert upward == [], "a lower layer imports a higher one:\n" + "\n".join(upward)
    assert set(KNOWN) - seen == set(), "KNOWN lists imports that are gone: remove them"


def test_timelines_do_not_need_the_event_model() -> None:
    """`Span` lives in model/trace.py: what records a timeline without simulating tiles (the serving simulator, the
    DRAM channel, the trace writer) does not import the event model, and through it the analytical model."""
    modules = _modules()
    for module in ("archsim.model.trace", "archsim.model.dram", "archsim.systems.serving"):
        assert "archsim.model.event" not in {name for name, _ in _imports(module, modules[module], modules)}, module


def test_the_check_sees_every_kind_of_import(tmp_path) -> None:
    """A top-level, a lazy, a TYPE_CHECKING, a relative and a by-name import are each found, with their line."""
    path = tmp_path / "probe.py"
    path.write_text("from archsim.model import analytical\n"
                    "def f():\n    import archsim.dse.spec\n"
                    "if TYPE_CHECKING:\n    from ..report.sweep import x\n"
                    "LOAD = 'archsim.dse.spec.sweep_from_dict'\n")
    modules = _modules()
    found = sorted(_imports("archsim.mapping.probe", path, modules), key=lambda item: item[1])
    assert found == [("archsim.model.analytical", 1), ("archsim.dse.spec", 3), ("archsim.report.sweep", 5),
                     ("archsim.dse.spec", 6)]
    assert [_layer(name) > _layer("archsim.mapping.probe") for name, _ in found] == [True] * 4
