"""Collection-relative verdicts: the cohort statistics, the normalised score, cut fitting, and
`whysim calibrate` / `whysim evaluate` through the real CLI."""
from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import encode, make_picture

from whysim.indexer.datadir import DataDir
from whysim.indexer.verdicts import (
    AS_NORM,
    Cohort,
    VerdictJudge,
    VerdictRule,
    balanced_accuracy,
    best_cut,
    default_rule,
    match_percent,
)
from whysim.webui.cli import cli

SMALL = ["--input-size", "64", "--workers", "0", "--no-progress"]


def unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def test_best_cut_matches_an_exhaustive_search() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(np.r_[rng.normal(1.5, 1, 60), rng.normal(0, 1, 400)], 1)  # with ties
    same = np.r_[np.ones(60, bool), np.zeros(400, bool)]
    cut, accuracy = best_cut(scores, same)
    brute = max(balanced_accuracy(scores, same, c) for c in np.unique(scores))
    assert abs(accuracy - brute) < 1e-12
    assert abs(balanced_accuracy(scores, same, cut) - accuracy) < 1e-12


def test_a_pair_is_judged_against_each_image_own_neighbourhood() -> None:
    """Two collections whose raw similarities live on different scales get the same verdicts."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    for spread in (0.3, 1.2):  # a tight collection (high cosines everywhere) and a loose one
        vectors = unit(np.repeat(centres, 2, axis=0) + rng.normal(scale=spread * 0.3, size=(60, 16))
                       + 3.0 * spread * np.ones(16))
        judge = VerdictJudge(Cohort.sample(vectors), VerdictRule())
        sims = vectors @ vectors.T
        same = [(2 * i, 2 * i + 1) for i in range(30)]
        other = [(2 * i, 2 * i + 2) for i in range(29)]
        pairs = same + other
        verdicts = judge.judge(vectors[[a for a, _ in pairs]], vectors[[b for _, b in pairs]],
                               np.array([sims[a, b] for a, b in pairs]))
        labels = np.array([True] * len(same) + [False] * len(other))
        predicted = np.array([v.similar for v in verdicts])
        assert 0.5 * (predicted[labels].mean() + (~predicted[~labels]).mean()) > 0.9


def test_cohort_statistics_leave_the_image_itself_out() -> None:
    vectors = unit(np.random.default_rng(1).normal(size=(40, 8)))
    cohort = Cohort.sample(vectors)
    centre, spread = cohort.statistics(vectors[:1])
    others = (vectors[1:] @ vectors[0]).astype(np.float64)
    assert abs(centre[0] - others.mean()) < 1e-6 and abs(spread[0] - others.std()) < 1e-6
    judge = VerdictJudge(cohort, VerdictRule())
    left, right = judge.scores(vectors[:1], vectors[1:2], vectors[:1] @ vectors[1]), \
        judge.scores(vectors[1:2], vectors[:1], vectors[1:2] @ vectors[0])
    assert np.allclose(left, right)  # symmetric


def test_top_statistics_are_those_of_each_vector_most_similar_cohort_members() -> None:
    vectors = unit(np.random.default_rng(2).normal(size=(60, 8)))
    centre, spread = Cohort.sample(vectors).statistics(vectors[:1], top=10)
    others = np.sort((vectors[1:] @ vectors[0]).astype(np.float64))[-10:]  # itself left out
    assert abs(centre[0] - others.mean()) < 1e-6 and abs(spread[0] - others.std()) < 1e-6


def test_rules_round_trip_and_describe_themselves() -> None:
    default = VerdictRule()
    assert VerdictRule.from_json(default.to_json()) == default and not default.fitted
    assert "broad categories" in default.to_dict()["description"] and "`" not in default.describe()
    instance = default_rule(instance_level=True)
    assert instance.normalisation == AS_NORM and instance.top and "look most like the query" in instance.describe()
    fitted = VerdictRule(kind="fitted", cut=1.2, hits=100, f1=0.9, source="photos", model="abc")
    assert VerdictRule.from_json(fitted.to_json()) == fitted and fitted.to_dict()["fitted"]
    assert "F1 0.90 on 100 labelled search hits" in fitted.describe()
    # A rule stored before rules knew their normalisation reads as the S-norm rule it was.
    old = VerdictRule.from_json(json.dumps({"kind": "fitted", "cut": 1.3, "pairs": 50, "balanced_accuracy": 0.8,
                                            "source": "photos", "model": "abc"}))
    assert old.normalisation == "s-norm" and old.cut == 1.3 and "balanced accuracy 0.80" in old.describe()


def test_the_match_figure_is_half_at_the_cut_and_says_similar_exactly_from_fifty_percent() -> None:
    rule = default_rule(instance_level=True)
    assert rule.match(rule.cut) == 0.5
    for score in np.linspace(rule.cut - 3, rule.cut + 3, 601):
        match = rule.match(float(score))
        assert 0.0 <= match <= 1.0
        assert (match_percent(match) >= 50) == (score >= rule.cut)
    assert rule.match(rule.cut + 1) > rule.match(rule.cut + 0.5) > 0.5


# ------------------------------------------------------------------ CLI


def run(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def labelled_collection(root: Path, groups: int = 12, per_group: int = 3) -> Path:
    """Groups of near-identical pictures (one scene, small changes): an instance-level collection."""
    for group, copy in product(range(groups), range(per_group)):
        folder = root / f"scene_{group:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        picture = make_picture(group, size=(96 + 4 * copy, 72), kind="stripes" if group % 2 else "blobs")
        (folder / f"view_{copy}.jpg").write_bytes(encode(picture, quality=70 + 10 * copy))
    return root


def test_calibrate_fits_a_cut_that_search_evaluate_and_restarts_use(tmp_path: Path) -> None:
    root, datadir = labelled_collection(tmp_path / "photos"), DataDir(tmp_path / "data")
    run("index", root, "--data-dir", datadir.root, *SMALL)
    before = json.loads(run("evaluate", root, "--data-dir", datadir.root, "--json", *SMALL))
    assert before["verdict_rule"]["kind"] == "default"
    assert 0.0 <= before["verdict_balanced_accuracy"] <= before["verdict_balanced_accuracy_best"] <= 1.0

    report = json.loads(run("calibrate", root, "--data-dir", datadir.root, "--json"))
    assert report["rule"]["kind"] == "fitted" and report["hits"] > 0 and report["classes"] == 12
    after = json.loads(run("evaluate", root, "--data-dir", datadir.root, "--json", *SMALL))
    assert after["verdict_rule"]["fitted"] and after["verdict_cut"] == report["cut"]
    # Fitted on the top-k hits of the labelled queries: the population it is judged on.
    assert after["topk_verdict_f1"] >= after["topk_verdict_f1_best"] - 0.02

    hits = json.loads(run("search", root / "scene_00" / "view_0.jpg", "--data-dir", datadir.root, "--json", "-k", "3"))
    assert hits["verdict_rule"]["kind"] == "fitted" and hits["verdict_rule"]["cut"] == report["cut"]

    # It survives compact and an incremental run, and --reset goes back to the default.
    run("compact", "--data-dir", datadir.root)
    (root / "scene_00" / "extra.jpg").write_bytes(encode(make_picture(500)))
    run("index", root, "--data-dir", datadir.root, "--no-progress")
    again = json.loads(run("search", "--id", "1", "--data-dir", datadir.root, "--json"))
    assert again["verdict_rule"]["cut"] == report["cut"]
    run("calibrate", root, "--data-dir", datadir.root, "--reset")
    assert json.loads(run("search", "--id", "1", "--data-dir", datadir.root, "--json"))["verdict_rule"]["kind"] == "default"


def test_calibrate_explains_what_is_missing(tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no index" in run("calibrate", empty, "--data-dir", datadir.root, code=1)
    root = labelled_collection(tmp_path / "photos", groups=3)
    run("index", root, "--data-dir", datadir.root, *SMALL)
    assert "no indexed, labelled image" in run("calibrate", empty, "--data-dir", datadir.root, code=1)


def test_on_an_instance_level_collection_only_the_true_match_among_the_top_hits_is_similar(tmp_path: Path) -> None:
    """Pairs of views of the same scene among many look-alikes (rooms in miniature): a query's top-10
    hold its one true match and nine other scenes, and the verdicts must tell them apart rather than
    call every hit shown "similar"."""
    root, datadir = labelled_collection(tmp_path / "photos", groups=30, per_group=2), DataDir(tmp_path / "data")
    run("index", root, "--data-dir", datadir.root, *SMALL)
    assert json.loads(run("stats", "--data-dir", datadir.root, "--json"))["collection_kind"] == "instance-level"
    for group in (0, 7, 13, 21, 29):
        hits = json.loads(run("search", root / f"scene_{group:02d}" / "view_0.jpg", "--data-dir", datadir.root,
                              "--json", "-k", "10"))
        assert hits["verdict_rule"]["normalisation"] == "as-norm"
        verdicts = {hit["path"]: hit["verdict"] for hit in hits["hits"]}
        assert len(verdicts) == 10
        assert verdicts.get(f"scene_{group:02d}/view_1.jpg") == "similar"
        assert list(verdicts.values()).count("similar") < 10
        for hit in hits["hits"]:
            assert (hit["match"] >= 0.5) == (hit["verdict"] == "similar")
