"""The wheel installs one import package, `whysim`, whole, and works from outside the repository.

An editable install imports from the folders themselves, so it still works when a subpackage is
missing from the wheel; only a real wheel, installed elsewhere, shows that.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("indexer", "search", "webui", "migrations")
PACKAGE_DATA = ("migrations/script.py.mako", "webui/templates/search.html", "webui/static/whysim.css",
                "webui/static/js/main.js", "webui/static/favicon.svg")


def source_packages() -> set[str]:
    """Every folder with an __init__.py under the design card's top-level folders, as a wheel path."""
    return {f"whysim/{init.parent.relative_to(REPO).as_posix()}" for folder in FOLDERS
            for init in (REPO / folder).rglob("__init__.py") if "__pycache__" not in init.parts}


def tracked_copy(target: Path) -> Path:
    """The repository's tracked files (what a clean clone has), copied to build from."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tracked_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    (built,) = out.glob("whysim-*.whl")
    return built


def test_the_wheel_holds_whysim_alone_with_every_subpackage_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"whysim"}, top_level
    assert "whysim/__init__.py" not in names  # an implicit namespace: nothing of its own to install
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    assert packages == source_packages()
    for data in PACKAGE_DATA:
        assert f"whysim/{data}" in names


def test_the_installed_wheel_indexes_and_searches_from_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies (torch, faiss, ...) come from this environment's site-packages as a plain path
    # entry: its .pth files, the editable install of whysim among them, are not read from there.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    assert sorted(path.name for path in site.iterdir() if not path.name.endswith((".pth", ".dist-info"))
                  and path.name != "__pycache__") == ["whysim"]

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import whysim.search.api.routes as m; print(m.__file__)"],
                           cwd=work, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    whysim = venv / "bin" / "whysim"
    indexed = subprocess.run([str(whysim), "index", str(REPO / "samples" / "flowers"), "--data-dir", "data", "--json"],
                             cwd=work, capture_output=True, text=True, timeout=600)
    assert indexed.returncode == 0, indexed.stderr
    report = json.loads(indexed.stdout)
    assert report["indexed"] + report["duplicates"] == sum(1 for _ in (REPO / "samples" / "flowers").rglob("*.jpg"))
    found = subprocess.run([str(whysim), "search", "--id", "1", "-k", "3", "--data-dir", "data", "--json"],
                           cwd=work, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)["hits"]) == 3
