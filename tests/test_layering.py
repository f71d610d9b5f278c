"""The package's layers: a subpackage imports only itself and the layers below it (utils < ops < data,
evaluation < tiling < modeling < engine < the command-line modules), read from the source with ast."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tinyfast"
LAYERS = {"_C": 0, "utils": 0, "ops": 1, "data": 2, "evaluation": 2, "tiling": 3, "modeling": 4, "engine": 5}
CLI_LAYER = 6  # the modules at the top of the package: train, test, evaluate, ...


def unit_of(path: Path) -> str:
    """The subpackage a source file belongs to, or the module name for the package's top-level files."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def layer_of(unit: str) -> int:
    return LAYERS.get(unit, CLI_LAYER)


def imported_units(path: Path) -> set[str]:
    """The tinyfast subpackages or top-level modules that `path` imports, anywhere in the file."""
    units = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            names = names if node.module != "tinyfast" else [f"tinyfast.{alias.name}" for alias in node.names]
        else:
            continue
        units |= {name.split(".")[1] for name in names if name.startswith("tinyfast.")}
    return units


SOURCES = sorted(
    path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py" or path.parent != PACKAGE
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer_or_a_peer(path):
    unit = unit_of(path)
    for imported in imported_units(path) - {unit}:
        assert layer_of(imported) < layer_of(unit), (
            f"tinyfast/{path.relative_to(PACKAGE)} ({unit}, layer {layer_of(unit)}) imports {imported} "
            f"(layer {layer_of(imported)})"
        )


def test_every_subpackage_has_a_layer():
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS) - {"_C"}  # _C: the compiled extension, below the ops


def test_the_reader_sees_every_form_of_import(tmp_path):
    source = tmp_path / "tinyfast_like.py"
    source.write_text(
        "import tinyfast.ops\nfrom tinyfast import data\nfrom tinyfast.engine.config import x\n"
        "def f():\n    from tinyfast.modeling import build\n"
    )
    assert imported_units(source) == {"ops", "data", "engine", "modeling"}
