"""Is a re-index started from the API (POST /api/index/refresh) as fast as `whysim index`?

Twice, in fresh data directories: `whysim index` on the first --seed photos of DATASET (so the
collection is known), then --photos more are copied in, and the increment is indexed either by
`whysim index` again or by the admin endpoint of a running `whysim serve --production`. Prints
both rates (the indexer's own report: images per second of its loop) and their ratio.

    .venv/bin/python tests/benchmarks/bench_reindex_api.py DATASET [--seed 20] [--photos 200] \
        [--input-size PX] [--runtime auto|torch|openvino|onnxruntime]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_load import photo_files
from bench_search_latency import log
from http_load import whysim_server

from whysim.indexer.model.card import DEFAULT_INPUT_SIZE

WHYSIM = [sys.executable, "-c", "from whysim.webui.cli import main; main()"]
TOKEN = "bench-reindex-admin-token"


def copy_photos(photos: list[Path], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for number, photo in enumerate(photos):
        shutil.copyfile(photo, target / f"{number:05d}-{photo.name}")


def index(collection: Path, data_dir: Path, input_size: int, runtime: str) -> dict:
    done = subprocess.run([*WHYSIM, "index", str(collection), "--data-dir", str(data_dir), "--input-size",
                           str(input_size), "--runtime", runtime, "--no-progress", "--json"],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def refresh_through_api(data_dir: Path, token_file: Path, runtime: str) -> dict:
    with whysim_server(data_dir, "--production", "--admin-token-file", str(token_file), "--no-access-log",
                       "--runtime", runtime) as server:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        url = f"{server.base_url}/api/index/refresh"
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", headers=headers), timeout=60).read()
        while True:
            status = json.loads(urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60).read())
            if status["state"] != "running":
                return status["collections"][0]["report"]  # type: ignore[no-any-return]
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    parser.add_argument("--runtime", default="auto", help="of both the CLI run and the server")
    args = parser.parse_args()
    photos = photo_files(args.dataset)[:args.seed + args.photos]
    rates = {}
    with tempfile.TemporaryDirectory(prefix="whysim-bench-reindex-") as scratch:
        token_file = Path(scratch) / "token"
        token_file.write_text(TOKEN)
        for how in ("whysim index", "POST /api/index/refresh"):
            work = Path(scratch) / how.split()[0].strip("/")
            collection, data_dir = work / "photos", work / "data"
            copy_photos(photos[:args.seed], collection)
            index(collection, data_dir, args.input_size, args.runtime)
            copy_photos(photos[args.seed:], collection / "more")
            log(f"{how}: {args.photos} new photos")
            report = index(collection, data_dir, args.input_size, args.runtime) if how == "whysim index" \
                else refresh_through_api(data_dir, token_file, args.runtime)
            rates[how] = report["images_per_second"]
            print(f"{how:<26} {report['indexed']:>4} indexed in {report['seconds']:.1f} s: "
                  f"{report['images_per_second']:.1f} images/s")
    ratio = rates["POST /api/index/refresh"] / rates["whysim index"]
    print(f"API / CLI: {ratio:.2f}")
    print(json.dumps({"runtime": args.runtime, "input_size": args.input_size, "rates": rates, "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
