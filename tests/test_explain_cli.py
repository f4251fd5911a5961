"""`whysim explain` and `whysim evaluate-explanations` through the real CLI and model."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import encode, make_picture
from PIL import Image

from whysim.indexer.model.card import DEFAULT_INPUT_SIZE
from whysim.webui.cli import cli


@pytest.fixture
def catalog_url() -> None:
    """SQLite only: these commands use the catalog just to find the index's model."""
    return None


SMALL = ["--input-size", "64"]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def two_pictures(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "first.jpg", tmp_path / "second.png"
    first.write_bytes(encode(make_picture(1, size=(120, 80))))
    second.write_bytes(encode(make_picture(2, size=(90, 90), kind="stripes"), "PNG"))
    return first, second


def test_explain_writes_a_panel_and_reports_the_verdict(tmp_path, datadir) -> None:
    first, second = two_pictures(tmp_path)
    panel, maps = tmp_path / "out" / "panel.png", tmp_path / "maps.npz"
    panel.parent.mkdir()
    code, out, _ = invoke("explain", str(first), str(second), "-o", str(panel), "--maps", str(maps), "--json",
                          "--data-dir", str(datadir.root), *SMALL)
    assert code == 0, out
    report = json.loads(out)
    assert {"similarity", "verdict", "threshold", "factual", "counterfactual", "panel", "model"} <= set(report)
    assert report["verdict"] == ("similar" if report["similarity"] >= report["threshold"] else "dissimilar")
    assert (report["match"] >= 0.5) == (report["verdict"] == "similar")
    assert report["verdict"] in report["factual"] and "against" in report["counterfactual"]
    assert report["model"].startswith("lite0@64")
    with Image.open(panel) as image:
        assert image.format == "PNG" and image.width > 3 * 200 and image.height > 2 * 200
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # images and heatmaps, not a blank page
    saved = np.load(maps)
    assert set(saved.files) == {"query_factual", "query_counterfactual", "hit_factual", "hit_counterfactual"}
    assert saved["hit_factual"].shape == (2, 2) and np.isfinite(saved["hit_factual"]).all()


def test_the_threshold_option_decides_the_verdict(tmp_path, datadir) -> None:
    first, second = two_pictures(tmp_path)
    common = [str(first), str(second), "-o", str(tmp_path / "p.png"), "--json", "--data-dir", str(datadir.root), *SMALL]
    low = json.loads(invoke("explain", *common, "--threshold", "-1")[1])
    high = json.loads(invoke("explain", *common, "--threshold", "1.01")[1])
    assert (low["verdict"], high["verdict"]) == ("similar", "dissimilar")
    assert low["similarity"] == high["similarity"] and high["threshold"] == 1.01


def test_explain_prints_a_readable_summary_and_defaults_the_panel_name(tmp_path, datadir, monkeypatch) -> None:
    first, second = two_pictures(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, _ = invoke("explain", str(first), str(second), "--data-dir", str(datadir.root), *SMALL)
    assert code == 0, out
    # One figure a person can read (the match strength, with what 50% means), the cosine in the details,
    # and never a score printed next to a cut on another scale.
    first_line = out.splitlines()[0]
    assert re.fullmatch(r"match \d{1,3}%: (similar|dissimilar) \(50% and up is similar; cosine similarity -?[\d.]+; "
                        r"model .*\)", first_line), first_line
    assert re.search(r"(cut|threshold)\D{0,12}\d", out) is None and "factual maps" in out
    # No index in the data directory: nothing to judge against, so the model card's cosine cut decides.
    assert "verdict rule: similar when the cosine similarity" in out
    assert (tmp_path / "explain-first-vs-second.png").is_file()
    # Region shares as the page lists them: each side's list adds up to 100% (not each region's
    # part of all the evidence over every pair of cells, which reads "0%").
    parts: dict[str, list[int]] = {}
    for found in re.finditer(r"region pair \d+: .*?, (\d+)% of the listed regions' evidence (for|against) the match", out):
        parts.setdefault(found[2], []).append(int(found[1]))
    assert parts and sum(map(len, parts.values())) == len(re.findall(r"^region pair", out, flags=re.M)), out
    for side in parts.values():
        assert abs(sum(side) - 100) <= len(side), out  # rounding to whole percent


def test_explain_refuses_a_file_that_is_not_an_image(tmp_path, datadir) -> None:
    first, _ = two_pictures(tmp_path)
    broken = tmp_path / "notes.jpg"
    broken.write_bytes(b"this is not a picture")
    code, out, err = invoke("explain", str(first), str(broken), "-o", str(tmp_path / "p.png"),
                            "--data-dir", str(datadir.root), *SMALL)
    assert code == 1 and "notes.jpg" in err and "not a recognised image format" in err
    assert "Traceback" not in out + err and not (tmp_path / "p.png").exists()


def test_explain_uses_the_model_of_the_index_in_the_data_directory(tmp_path, make_collection, datadir) -> None:
    root = make_collection({"blobs": 2, "stripes": 2})
    code, out, _ = invoke("index", str(root), "--data-dir", str(datadir.root), "--input-size", "96",
                          "--workers", "0", "--no-progress", "--json")
    assert code == 0, out
    first, second = two_pictures(tmp_path)
    code, out, _ = invoke("explain", str(first), str(second), "-o", str(tmp_path / "p.png"), "--json",
                          "--data-dir", str(datadir.root))
    assert code == 0, out
    assert json.loads(out)["model"].startswith("lite0@96")


def test_evaluate_explanations_reports_aucs_for_each_map_and_group(make_collection, datadir) -> None:
    root = make_collection({"blobs": 3, "stripes": 3})
    code, out, _ = invoke("evaluate-explanations", str(root), "--pairs", "2", "--seed", "1", "--json",
                          "--maps", "gradcam,contribution", "--steps", "10", "--random-boxes", "3",
                          "--no-progress", "--data-dir", str(datadir.root), *SMALL)
    assert code == 0, out
    report = json.loads(out)
    assert report["evaluated"] == 2 and report["skipped"] == [] and report["steps"] == 10
    assert report["maps"] == ["gradcam", "contribution"] and report["random_boxes"] == 3
    groups = report["groups"]
    assert groups["all"]["n"] == 2 and groups["same class"]["n"] == 1 and groups["different class"]["n"] == 1
    verdicts = sum(groups.get(name, {"n": 0})["n"] for name in ("similar verdict", "dissimilar verdict"))
    assert verdicts == 2
    for kind in ("gradcam factual", "gradcam counterfactual", "contribution factual", "random",
                 "contribution against similarity"):
        for curve in ("deletion", "insertion"):
            stats = groups["all"][kind][curve]
            assert -1.0 <= stats["mean"] <= 1.0 and stats["std"] >= 0.0
    assert "deletion_minus_random" in groups["all"]["gradcam factual"]
    boxes = groups["all"]["correspondence"]
    assert boxes["n"] == 2 and 0.0 <= boxes["top_lowers_more"] <= 1.0
    pair = report["pair_results"][0]
    assert set(pair["boxes"]) == {"top_drop", "random_drop", "share"}
    assert all(-2.0 <= value <= 2.0 for value in pair["boxes"].values())
    assert set(pair["aucs"]) == {"gradcam factual", "gradcam counterfactual", "contribution factual",
                                 "contribution counterfactual", "random"}


def test_evaluate_explanations_refuses_an_unknown_map(make_collection, datadir) -> None:
    root = make_collection({"blobs": 2, "stripes": 2})
    code, _, err = invoke("evaluate-explanations", str(root), "--pairs", "2", "--maps", "gradcam,lrp",
                          "--data-dir", str(datadir.root), *SMALL)
    assert code == 1 and "unknown map 'lrp'" in err and "Traceback" not in err


def test_evaluate_explanations_needs_two_classes(tmp_path, make_collection, datadir) -> None:
    root = make_collection({"blobs": 3})
    code, _, err = invoke("evaluate-explanations", str(root), "--pairs", "2", "--data-dir", str(datadir.root), *SMALL)
    assert code == 1 and "at least two class folders" in err


REPO = Path(__file__).resolve().parents[1]
RANK_ONE_COLOUR = (0xE6, 0x9F, 0x00)  # whysim.search.explain.overlays.MATCH_COLOURS[0]


def test_explain_reports_matched_regions_and_draws_them_on_real_photos(datadir) -> None:
    first = REPO / "samples/flowers/daisy/305160642_53cde0f44f.jpg"
    second = sorted((REPO / "samples/flowers/daisy").glob("*.jpg"))[-1]
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    panel = artifacts / "cli-panel.png"
    code, out, _ = invoke("explain", str(first), str(second), "-o", str(panel), "--json", "--matches", "4",
                          "--data-dir", str(datadir.root))
    assert code == 0, out
    report = json.loads(out)
    matches, correspondence = report["matches"], report["correspondence"]
    side = DEFAULT_INPUT_SIZE // 32  # the target layer's grid at the default input size (Lite0: stride 32)
    assert len(matches) == 4 and correspondence["query_grid"] == [side, side]
    assert correspondence["share_sum"] == pytest.approx(1.0, abs=1e-3)
    with Image.open(first) as a, Image.open(second) as b:
        assert correspondence["query_size"] == list(a.size) and correspondence["hit_size"] == list(b.size)
    for match in matches:
        x0, y0, x1, y1 = match["hit_box"]
        assert 0 <= x0 < x1 <= correspondence["hit_size"][0] and 0 <= y0 < y1 <= correspondence["hit_size"][1]
        assert len(match["query_cells"]) == len(match["hit_cells"]) == 4  # 2x2-cell regions of the 14x14 grid
    with Image.open(panel) as image:
        pixels = np.asarray(image.convert("RGB"))
    rank_one = np.all(pixels == RANK_ONE_COLOUR, axis=2)
    assert rank_one.sum() > 4 * 30  # two boxes' outlines, the joining line and the legend swatch
    # the colour appears on both images of the matches row: left half (query) and right (hit)
    columns = np.nonzero(rank_one.any(axis=0))[0]
    assert columns.min() < 12 + 256 < columns.max()


def test_explain_can_draw_contribution_maps(tmp_path, datadir) -> None:
    first, second = two_pictures(tmp_path)
    code, out, _ = invoke("explain", str(first), str(second), "-o", str(tmp_path / "p.png"), "--json",
                          "--method", "contribution", "--data-dir", str(datadir.root), *SMALL)
    assert code == 0, out
    assert json.loads(out)["method"] == "contribution"
