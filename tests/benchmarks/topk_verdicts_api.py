"""The verdicts a user of the page sees: the top-k hits of every labelled photo, through the HTTP API.

Indexes DATASET into a fresh data directory with the real `whysim index` (unless --data-dir already
holds it), starts `whysim serve` on a free loopback port, and searches by id, through
`POST /api/search`, for every photo whose label (folder) has another photo. Prints the table of
verdicts against the truth (same folder or not) over all hits shown, with precision, recall and F1
of "similar", and the best single cut on the same hits' match figure for reference.

    .venv/bin/python tests/benchmarks/topk_verdicts_api.py ../shared/datasets/rooms [--k 10] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
from bench_support import require_dataset, run_whysim
from http_load import whysim_server

from whysim.indexer.evaluation.topk_verdicts import best_f1, precision_recall_f1


def api(url: str, path: str, payload: dict | None = None) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse (or fill) this data directory")
    args = parser.parse_args()
    dataset = require_dataset(args.dataset).resolve()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="whysim-topk-")) / "data"
    _, report = run_whysim("index", dataset, "--data-dir", data, "--no-progress")
    print(f"indexed {dataset.name}: {report['indexed']} new, {report['unchanged']} unchanged, "
          f"{report['vectors']} vectors, whitening {report['whitening']}")
    with whysim_server(data) as server:
        url = server.base_url + "/"
        images, offset = [], 0
        while offset is not None:
            page = api(url, f"api/images?limit=500&offset={offset}")
            images += [image for image in page["images"] if image["status"] == "indexed"]
            offset = page["next_offset"]
        labels = Counter(image["label"] for image in images)
        queries = [image for image in images if labels[image["label"]] > 1]
        table: Counter[tuple[str, bool]] = Counter()
        matches, same = [], []
        rule = None
        for image in queries:
            found = api(url, "api/search", {"image_id": image["id"], "k": args.k})
            rule = found["verdict_rule"]
            for hit in found["hits"]:
                truth = hit["label"] == image["label"]
                table[(hit["verdict"], truth)] += 1
                matches.append(hit["match"])
                same.append(truth)
    predicted = np.array(matches) >= 0.5
    truth = np.array(same)
    precision, recall, f1 = precision_recall_f1(predicted, truth)
    _, best = best_f1(np.array(matches), truth)
    print(f"\ntop-{args.k} hits of all {len(queries)} queries ({len(truth)} hits), rule: {rule['description']}")
    print(f"{'':>22} {'same ' + ('room' if 'rooms' in dataset.name else 'label'):>12} {'different':>12}")
    for verdict in ("similar", "dissimilar"):
        print(f"{'verdict ' + verdict:>22} {table[(verdict, True)]:>12,} {table[(verdict, False)]:>12,}")
    print(f"precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f} (best single cut on the match figure: "
          f"{best:.3f}); {predicted.mean():.1%} of the hits shown are called similar")
    print(json.dumps({"benchmark": "topk_verdicts_api", "dataset": dataset.name, "k": args.k, "queries": len(queries),
                      "table": {f"{verdict}/{'same' if same_label else 'different'}": count
                                for (verdict, same_label), count in table.items()},
                      "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                      "f1_best": round(best, 4)}))


if __name__ == "__main__":
    main()
