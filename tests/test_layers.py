"""The layer contract (pyproject.toml, ``[tool.importlinter]``): kept by the code, broken by one
upward import, and naming every module of the package; and the stores contract (no source
imports the decoder or the delivery layer)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev extra")


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    names = []
    for layer in contract["layers"]:
        for name in layer.replace("|", ":").split(":"):
            names.append(name.strip().strip("()"))
    return names


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "reactor", tree / "reactor", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_code_keeps_the_layers(tmp_path: Path) -> None:
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("reactor/settings.py", "reactor.events.catalogue"),
        ("reactor/events/model.py", "reactor.delivery.worker"),
        ("reactor/actions/base.py", "reactor.ops.metrics"),
        ("reactor/certs/rotation.py", "reactor.actions.certs_lifecycle"),
    ],
)
def test_one_upward_import_breaks_the_contract(tmp_path: Path, lower: str, higher: str) -> None:
    tree = _copy(tmp_path)
    module = tree / lower
    module.write_text(module.read_text(encoding="utf-8") + f"\nimport {higher}  # noqa\n", encoding="utf-8")
    done = _lint(tree)
    importer = lower.removesuffix(".py").replace("/", ".")
    assert done.returncode == 1, done.stdout
    assert "leaves BROKEN" in done.stdout  # the layers (an import of delivery may break the stores' too)
    assert f"{importer} -> {higher}" in done.stdout


def test_a_store_that_decodes_breaks_the_stores_contract(tmp_path: Path) -> None:
    """A source hands the order gate undecoded entries: one importing the decoder (as the worker's
    decoder was once called back from the Redis and NATS sources) fails the lint."""
    tree = _copy(tmp_path)
    module = tree / "reactor/sources/redis_streams.py"
    module.write_text(
        module.read_text(encoding="utf-8") + "\nimport reactor.events.decode  # noqa\n", encoding="utf-8"
    )
    done = _lint(tree)
    assert done.returncode == 1, done.stdout
    assert "1 kept, 1 broken" in done.stdout  # the layers hold: only the stores' contract sees it
    assert "(issue 16) BROKEN" in done.stdout
    assert "reactor.sources.redis_streams -> reactor.events.decode" in done.stdout


def test_every_module_has_a_layer() -> None:
    """A module left out of the contract could import anything; a package split over layers has
    an ``__init__`` of no code (nothing to import, nothing to place)."""
    layers = _layers()
    unlayered = []
    for path in (ROOT / "reactor").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if any(module == layer or module.startswith(layer + ".") for layer in layers):
            continue
        if path.name == "__init__.py" and "import" not in path.read_text(encoding="utf-8"):
            continue
        unlayered.append(module)
    assert unlayered == []
