"""Grouping and summarising per-pair AUCs, on hand-made results."""
from __future__ import annotations

from pathlib import Path

import pytest

from whysim.search.evaluation.correspondence_faithfulness import BoxDeletion
from whysim.search.evaluation.faithfulness_evaluation import PairResult, format_table, summarise
from whysim.search.evaluation.pair_sampling import LabelledPair


def result(same: bool, verdict: str, factual_deletion: float, random_deletion: float,
           boxes: BoxDeletion | None = None) -> PairResult:
    pair = LabelledPair(Path("a/1.jpg"), Path("a/2.jpg" if same else "b/2.jpg"), "a", "a" if same else "b")
    aucs = {"gradcam factual": {"deletion": factual_deletion, "insertion": 0.9},
            "gradcam counterfactual": {"deletion": 0.8, "insertion": 0.4},
            "random": {"deletion": random_deletion, "insertion": 0.6}}
    return PairResult(pair, 0.5, verdict, aucs, boxes)


def test_groups_split_by_verdict_and_by_class_relation() -> None:
    results = [result(True, "similar", 0.2, 0.5), result(True, "dissimilar", 0.4, 0.5),
               result(False, "dissimilar", 0.6, 0.4)]
    summary = summarise(results)
    assert {name: entry["n"] for name, entry in summary.items()} == {
        "all": 3, "similar verdict": 1, "dissimilar verdict": 2, "same class": 2, "different class": 1}
    same = summary["same class"]
    assert same["gradcam factual"]["deletion"]["mean"] == pytest.approx(0.3)
    assert same["gradcam factual"]["deletion"]["std"] == pytest.approx(0.1414214)  # sample std of 0.2 and 0.4
    assert same["gradcam factual"]["deletion_minus_random"]["mean"] == pytest.approx(-0.2)
    assert summary["different class"]["gradcam factual"]["deletion_minus_random"] == {
        "mean": pytest.approx(0.2), "std": 0.0, "t": 0.0, "below_zero": 0.0}
    assert "deletion_minus_random" not in summary["all"]["random"]


def test_empty_groups_are_left_out_and_the_table_has_a_row_per_group_and_map() -> None:
    summary = summarise([result(True, "similar", 0.2, 0.5)])
    assert set(summary) == {"all", "similar verdict", "same class"}
    table = format_table(summary).splitlines()
    assert "deletion AUC" in table[0] and "ins - random" in table[0]
    assert len(table) == 2 + 5 + 3 + 5 + 2  # verdict groups have no role rows: they equal factual/counterfactual
    assert any(line.startswith("similar verdict") and "gradcam factual" in line and "-0.300" in line for line in table)


def test_maps_by_role_follow_the_verdict() -> None:
    results = [result(True, "similar", 0.2, 0.5), result(False, "dissimilar", 0.6, 0.4)]
    assert results[0].role_aucs()["gradcam for similarity"] == results[0].aucs["gradcam factual"]
    assert results[1].role_aucs()["gradcam for similarity"] == results[1].aucs["gradcam counterfactual"]
    assert results[1].role_aucs()["gradcam against similarity"] == results[1].aucs["gradcam factual"]
    summary = summarise(results)
    # for similarity: deletion 0.2 (factual, similar pair) and 0.8 (counterfactual, dissimilar pair)
    assert summary["all"]["gradcam for similarity"]["deletion"]["mean"] == pytest.approx(0.5)
    assert summary["all"]["gradcam against similarity"]["deletion_minus_random"]["mean"] == pytest.approx(0.25)
    assert "gradcam for similarity" not in summary["similar verdict"]


def test_paired_differences_carry_their_t_statistic_and_the_box_check_is_summarised() -> None:
    results = [result(True, "similar", deletion, 0.5, BoxDeletion(top, random, 0.1))
               for deletion, top, random in ((0.2, 0.03, 0.01), (0.4, 0.02, 0.01), (0.3, 0.0, 0.01))]
    summary = summarise(results)
    difference = summary["all"]["gradcam factual"]["deletion_minus_random"]
    assert difference["mean"] == pytest.approx(-0.2) and difference["std"] == pytest.approx(0.1)
    assert difference["t"] == pytest.approx(-0.2 / (0.1 / 3 ** 0.5)) and difference["below_zero"] == 1.0
    boxes = summary["all"]["correspondence"]
    assert boxes["n"] == 3 and boxes["top_lowers_more"] == pytest.approx(2 / 3)
    assert boxes["mean_difference"] == pytest.approx((0.02 + 0.01 - 0.01) / 3)
    assert boxes["t"] == pytest.approx(boxes["mean_difference"] / (boxes["std_difference"] / 3 ** 0.5))
    assert "top box lowers it more for 67% of pairs" in format_table(summary)
