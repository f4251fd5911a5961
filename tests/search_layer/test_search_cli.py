"""`whysim search` through the real CLI on the real index."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from search_layer.collection import location
from whysim.webui.cli import cli


def search(*args: str) -> Result:
    return CliRunner().invoke(cli, ["search", *args], catch_exceptions=False)


def test_table_lists_k_hits_without_the_query(built_index, collection, images) -> None:
    query = images["blobs/blobs_001.jpg"]
    result = search(str(collection / query.path), "-k", "4", *location(built_index))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["rank", "match", "verdict", "cosine", "id", "label", "path"]
    rows = [line.split() for line in lines[1:5]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    # The match strength in whole percent decides the verdict: 50% and up is similar.
    assert all((int(row[1].rstrip("%")) >= 50) == (row[2] == "similar") for row in rows)
    assert all(row[2] in ("similar", "dissimilar") for row in rows)
    assert all(row[6] in images and images[row[6]].id == int(row[4]) for row in rows)
    assert query.path not in result.output.split("\n", 1)[1]
    assert lines[5] == "more: --offset 4"
    assert lines[6].startswith("match: how strongly each hit matches the query") and "verdicts: similar when" in lines[6]


def test_json_prints_the_hits_contract(built_index, collection, images) -> None:
    query = images["stripes/stripes_001.jpg"]
    result = search(str(collection / query.path), "-k", "3", "--json", *location(built_index))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    hits = payload["hits"]
    assert len(hits) == 3
    assert all(set(hit) == {"id", "path", "label", "score", "verdict", "verdict_score", "match"} for hit in hits)
    assert all((hit["match"] >= 0.5) == (hit["verdict"] == "similar") for hit in hits)
    assert all(hit["verdict"] in ("similar", "dissimilar") for hit in hits)
    assert payload["verdict_rule"]["kind"] == "default"
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    assert query.id not in [hit["id"] for hit in hits]
    assert all(images[hit["path"]].label == hit["label"] for hit in hits)
    by_id = json.loads(search("--id", str(query.id), "-k", "3", "--json", *location(built_index)).stdout)
    assert [hit["id"] for hit in by_id["hits"]] == [hit["id"] for hit in hits]


def test_min_score_and_offset(built_index, images) -> None:
    query = str(images["blobs/blobs_002.jpg"].id)
    everything = json.loads(search("--id", query, "-k", "20", "--json", *location(built_index)).stdout)
    assert everything["next_offset"] is None
    second = json.loads(search("--id", query, "-k", "2", "--offset", "2", "--json",
                               *location(built_index)).stdout)
    assert second["hits"] == everything["hits"][2:4]
    cut = (everything["hits"][1]["score"] + everything["hits"][2]["score"]) / 2
    high = json.loads(search("--id", query, "--min-score", str(cut), "--json",
                             *location(built_index)).stdout)
    assert [hit["id"] for hit in high["hits"]] == [hit["id"] for hit in everything["hits"][:2]]


def test_clear_errors(built_index, tmp_path: Path, images) -> None:
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    result = search(str(not_an_image), *location(built_index))
    assert result.exit_code == 1 and "not a recognised image format" in result.output
    result = search(str(not_an_image), "--data-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "run `whysim index DIR` first" in result.output
    assert not (tmp_path / "nothing").exists()
    result = search("--id", str(images["broken/truncated.jpg"].id), *location(built_index))
    assert result.exit_code == 1 and "has no vector" in result.output
    result = search("--id", "99999", *location(built_index))
    assert result.exit_code == 1 and "no image with id 99999" in result.output
    assert search(*location(built_index)).exit_code == 2
