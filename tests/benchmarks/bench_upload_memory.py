"""What a burst of small files claiming many pixels costs `whysim serve --production` in memory.

Indexes DATASET once (as bench_load.py does; cached in --work-dir), starts the production
server, warms it (an upload and an explanation load the model), and reads its resident size
(warm). Then --uploads distinct PNGs of --side x --side pixels of one colour (each a few hundred
KB at most: a decompression-bomb-like file within the pixel limit), --concurrency at a time,
all from one client within its upload limit, while the server's RSS is sampled every 20 ms.
Prints the warm size, the peak during the burst, the size --settle-s seconds after it, and the
answers by status. Exits with 1 when the peak is over --max-peak-mb, the size after is over warm
+ 200 MB, or any upload got a 5xx other than 503.

    .venv/bin/python tests/benchmarks/bench_upload_memory.py [DATASET] [--side 7999] [--uploads 20] [--concurrency 8]
"""
from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_load import build_index, indexed_ids, photo_files, warm_up
from bench_search_latency import log
from bench_support import REPO_ROOT
from http_load import multipart_image, whysim_server
from PIL import Image

AFTER_MARGIN_MB = 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def distinct_pngs(side: int, count: int) -> list[bytes]:
    """One encoded PNG, made `count` different files by a text chunk after its header."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (180, 120, 60)).save(buffer, "PNG", optimize=True)
    data = buffer.getvalue()
    header_end = 8 + 25  # signature, then the IHDR chunk
    files = []
    for number in range(count):
        text = b"Comment\x00" + str(number).encode()
        chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
        files.append(data[:header_end] + chunk + data[header_end:])
    return files


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)


def upload(base_url: str, data: bytes) -> int:
    body, content_type = multipart_image(data, 5, "bomb.png")
    request = urllib.request.Request(f"{base_url}/api/search", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=REPO_ROOT / "samples" / "flowers")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--side", type=int, default=7999)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--max-peak-mb", type=float, default=1536)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "whysim-bench-load")
    args = parser.parse_args()
    photos = photo_files(args.dataset)[:args.images]
    data_dir = build_index(args.work_dir, photos, args.input_size)
    ids = indexed_ids(data_dir)
    files = distinct_pngs(args.side, args.uploads)
    log(f"{args.uploads} PNGs of {args.side}x{args.side}, {len(files[0]) / 1024:.0f} KB each")
    # The warm-up's upload counts against the client's limit: room for it and the burst.
    limit = f"{args.uploads + 1}/minute"
    with whysim_server(data_dir, "--production", "--no-access-log", "--upload-limit", limit) as server:
        pid = server.process.pid
        warm_up(server.base_url, ids, photos[0])
        time.sleep(1)
        warm = rss_mb(pid)
        sampler = Sampler(pid)
        sampler.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            statuses = Counter(pool.map(lambda data: upload(server.base_url, data), files))
        burst_s = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        time.sleep(args.settle_s)
        after = rss_mb(pid)
    figures = {"file_kb": round(len(files[0]) / 1024), "warm_mb": round(warm), "peak_mb": round(sampler.peak),
               "after_mb": round(after), "burst_s": round(burst_s, 1), "statuses": dict(statuses)}
    checks = {
        f"peak {sampler.peak:.0f} MB <= {args.max_peak_mb:.0f} MB": sampler.peak <= args.max_peak_mb,
        f"after {after:.0f} MB within {AFTER_MARGIN_MB} MB of warm {warm:.0f} MB": after <= warm + AFTER_MARGIN_MB,
        f"no 5xx but 503: {dict(statuses)}": all(status < 500 or status == 503 for status in statuses),
    }
    print(f"\n{args.uploads} uploads of a {figures['file_kb']} KB {args.side}x{args.side} PNG, {args.concurrency} at a time, "
          f"in {burst_s:.1f} s")
    for text, passed in checks.items():
        print(f"  [{'ok' if passed else 'FAILED'}] {text}")
    print(json.dumps(figures))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
