"""The layer contracts in pyproject.toml hold, and import-linter really catches a crossing import."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts, over the `whysim` package laid out under `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def layered_copy(tmp_path: Path) -> Path:
    """whysim/{indexer,search,webui} under tmp_path: search copied (to be edited), the others linked."""
    package = tmp_path / "whysim"
    package.mkdir()
    shutil.copytree(REPO / "search", package / "search", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("indexer", "webui"):
        (package / folder).symlink_to(REPO / folder)
    return tmp_path


def test_the_code_keeps_every_layer_contract(tmp_path: Path) -> None:
    done = lint_imports(layered_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_explanation_module_importing_the_serving_layer_breaks_a_contract(tmp_path: Path) -> None:
    tree = layered_copy(tmp_path)
    with (tree / "whysim" / "search" / "explain" / "overlays.py").open("a") as module:
        module.write("\nfrom whysim.search.serving import engine  # noqa: E402,F401\n")
    done = lint_imports(tree)
    assert done.returncode != 0
    assert "whysim.search.explain is not allowed to import whysim.search.serving" in done.stdout
    assert "whysim.search.explain.overlays -> whysim.search.serving.engine" in done.stdout


def test_the_indexer_importing_flask_breaks_a_contract(tmp_path: Path) -> None:
    tree = layered_copy(tmp_path)
    (tree / "whysim" / "indexer").unlink()
    shutil.copytree(REPO / "indexer", tree / "whysim" / "indexer", ignore=shutil.ignore_patterns("__pycache__"))
    with (tree / "whysim" / "indexer" / "scanning.py").open("a") as module:
        module.write("\nimport flask  # noqa: E402,F401\n")
    done = lint_imports(tree)
    assert done.returncode != 0
    assert "whysim.indexer.scanning -> flask" in done.stdout
