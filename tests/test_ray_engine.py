"""`whysim index --engine ray`: the same outcomes and vectors as the built-in pipeline, and the
same crash safety (kill -9 mid-run, then a rerun completes with nothing lost or duplicated)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_crash_consistency import (
    PICTURES,
    Kill,
    build_collection,
    check_after_kill,
    check_complete,
    index_in_process,
    killed_run,
    read_state,
)

from whysim.indexer.datadir import DataDir

pytestmark = pytest.mark.slow


def by_path(datadir: DataDir) -> dict[str, tuple[str, str | None, np.ndarray | None]]:
    """path -> (status, sha256, vector) as stored."""
    state = read_state(datadir)
    return {row.path: (row.status, row.sha256, state.vectors.get(image_id)) for image_id, row in state.rows.items()}


def test_ray_gives_the_builtin_outcomes_and_vectors(tmp_path: Path, ray_cluster: str) -> None:
    root = build_collection(tmp_path / "photos", range(14))  # two copies of one file and a truncated one
    builtin, on_ray = DataDir(tmp_path / "builtin"), DataDir(tmp_path / "ray")
    index_in_process(root, builtin)
    index_in_process(root, on_ray, "--engine", "ray", "--ray-address", ray_cluster)

    expected, found = by_path(builtin), by_path(on_ray)
    assert {path: status for path, (status, _, _) in found.items()} == \
        {path: status for path, (status, _, _) in expected.items()}
    assert found["broken/truncated.jpg"][0] == "failed"
    assert sorted(status for status, _, _ in found.values()).count("duplicate") == 2  # the two copies
    for path, (status, sha, vector) in found.items():
        assert sha == expected[path][1], path
        if status == "indexed":
            assert float(np.dot(vector, expected[path][2])) >= 0.9999, path
    check_after_kill(read_state(on_ray))  # vectors are exactly the indexed rows
    (root / "stripes" / "stripes_001.jpg").unlink()
    index_in_process(root, on_ray, "--engine", "ray", "--prune")  # in process: joins the same cluster
    assert "stripes/stripes_001.jpg" not in by_path(on_ray) and len(read_state(on_ray).rows) == len(found) - 1


def test_kill_9_during_a_ray_run_loses_and_duplicates_nothing(tmp_path: Path, ray_cluster: str) -> None:
    root = build_collection(tmp_path / "photos", range(PICTURES))
    clean = DataDir(tmp_path / "clean")
    index_in_process(root, clean)
    clean_state = read_state(clean)
    reference = {row.sha256: clean_state.vectors[image_id] for image_id, row in clean_state.rows.items()
                 if row.status == "indexed"}
    datadir = DataDir(tmp_path / "data")
    ray_options = ("--engine", "ray", "--ray-address", ray_cluster)

    killed, _ = killed_run(root, datadir, Kill(after_saves=3, delay_s=0.02), *ray_options)

    assert killed, "the run finished before the kill"
    after_kill = read_state(datadir)
    check_after_kill(after_kill)
    assert 0 < len(after_kill.ids_with("indexed")) < PICTURES
    index_in_process(root, datadir, *ray_options)
    check_complete(read_state(datadir), root, reference)
