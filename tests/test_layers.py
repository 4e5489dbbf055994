"""The structure ARCHITECTURE.md states, held: the layers and which way imports point, no import
cycle, and a library that speaks in parameters, never in the CLI's flags.

Imports are read from the source (every ``import`` and ``from ... import``, at the top or inside a
function, outside ``if TYPE_CHECKING:``), so an import added anywhere is checked.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# ARCHITECTURE.md, "Layers": lowest first; a module may import its own layer and the ones below
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", (
        "ssd", "ssd.lazy", "ssd.errors", "ssd.choices", "ssd.atomic_file", "ssd.device", "ssd.distributed", "ssd.heap_retention",
        "ssd.huge_pages", "ssd.geometry", "ssd.config_fields", "ssd.architectures", "ssd.config", "ssd.run_record",
        "ssd.prediction_log", "ssd.loadgen_conf", "ssd.video", "ssd.evaluation",
    )),
    ("numeric core", ("ssd.box_ops", "ssd.anchors", "ssd.decoding", "ssd.matching", "ssd.loss", "ssd.amp")),
    ("data and models", (
        "ssd.data", "ssd.models", "ssd.checkpoint", "ssd.onnx_export", "ssd.openvino_network", "ssd.quantize", "ssd.summary",
        "ssd.visualize",
    )),
    ("runners", (
        "ssd.predictor", "ssd.inference", "ssd.detector_spec", "ssd.image_stream", "ssd.prediction", "ssd.engine", "ssd.loadgen",
        "ssd.compliance", "ssd.submission", "ssd.report",
    )),
    ("command line", ("ssd.cli",)),
)
SIBLINGS_APART = (("ssd.data", "ssd.models"),)  # neither knows the other


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_of(module: str) -> int:
    """The layer of the longest package prefix the table names."""
    matches = [(len(entry), index) for index, (_, entries) in enumerate(LAYERS) for entry in entries if in_package(module, entry)]
    if not matches:
        raise AssertionError(f"{module} is in no layer of ARCHITECTURE.md's table (tests/test_layers.py LAYERS)")
    return max(matches)[1]


def imports_of(module: str) -> set[str]:
    """The ``ssd`` modules ``module`` imports at run time."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    type_only = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
                 for node in ast.walk(branch)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_import_points_to_the_same_layer_or_below():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in GRAPH.items() for target in targets if layer_of(target) > layer_of(module)]
    assert not upward, upward


def test_data_and_models_do_not_know_each_other():
    crossing = [f"{module} imports {target}" for module, targets in GRAPH.items() for target in targets
                for a, b in SIBLINGS_APART for x, y in ((a, b), (b, a)) if in_package(module, x) and in_package(target, y)]
    assert not crossing, crossing


def test_no_import_cycle():
    """Tarjan's strongly connected components of the import graph: none larger than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path: Path):
    """The layer rule on a made-up edge, so a table that maps everything to one layer would fail here."""
    assert layer_of("ssd.data.coco") < layer_of("ssd.engine.fit") < layer_of("ssd.cli.train")
    assert layer_of("ssd.errors") == 0 and layer_of("ssd.cli") == len(LAYERS) - 1
    assert "ssd.engine.options" not in GRAPH["ssd.models.checkpointing"]  # the arrow the second pass removed
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("ssd_other.module")


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def library_strings() -> list[tuple[str, int, str]]:
    """Every string literal of the library (not ``ssd.cli``) that is not a docstring."""
    found = []
    for module, path in MODULES.items():
        if in_package(module, "ssd.cli"):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        found += [(module, node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]
    return found


def test_library_messages_name_parameters_not_flags():
    """The CLI maps parameters to flags (``ssd.errors.parameter``); a flag in a library string is a message
    that reads wrong from Python (``Detector.from_onnx(device="cuda:3")`` must not say ``--device``)."""
    flagged = [f"{module}:{line}: {text!r}" for module, line, text in library_strings() if FLAG.search(text)]
    assert not flagged, flagged


def test_a_parameter_reads_as_itself_from_python_and_as_its_flag_from_the_cli(monkeypatch, capsys, tmp_path: Path):
    import torch

    from ssd.cli.main import flag_of, main
    from ssd.distributed import select_device
    from ssd.errors import SSDError, parameter

    error = SSDError(f"{parameter('file_list')} x.csv: no such list; give {parameter('data_path')}")
    assert str(error) == "file_list x.csv: no such list; give data_path"
    assert error.naming(flag_of) == "--file-list x.csv: no such list; give --data-path"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, on every machine
    with pytest.raises(SSDError) as raised:
        select_device("cuda:3", 0)
    assert str(raised.value).startswith("device cuda:3: CUDA is not available")
    assert main(["evaluate", "--pretrained-model", "x.pth", "--device", "cuda:3", "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda:3: CUDA is not available")


def test_no_test_module_imports_another():
    """What test modules share lives in conftest.py (fixtures) and support.py, so that each module stands alone,
    as a pytest-xdist worker runs it."""
    tests = Path(__file__).resolve().parent
    names = {path.stem for path in tests.glob("test_*.py")}
    for path in sorted(tests.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & names, f"{path.name} imports {sorted(imported & names)}"
