"""What one client may learn or cost the server: no paths in /api/stats without the admin token,
an admin token never on the command line, control characters escaped in the access log, and
uploads decoded within a memory budget shared by concurrent requests."""
from __future__ import annotations

import io
import logging
import os
import struct
import subprocess
import sys
import threading
import zlib

import pytest
from conftest import encode, make_picture
from PIL import Image
from whysim_cli import whysim

from search_layer.test_api_errors import assert_json_error, upload
from whysim.indexer.imaging import decode_image
from whysim.search.api.access_log import LOGGER_NAME, logfmt_value
from whysim.search.serving.decode_budget import DecodeBudget, DecodeBusy, decode_cost
from whysim.search.serving.memory import release_freed_memory, use_one_kept_heap
from whysim.search.serving.model_host import ModelHost
from whysim.webui.commands import read_admin_token

TOKEN = "a-long-enough-admin-token"


def png_header(width: int, height: int, color_type: int = 2) -> bytes:
    """A PNG's header chunks and an empty IDAT: what the header says, without a pixel to decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    palette = chunk(b"PLTE", bytes(3 * 256)) if color_type == 3 else b""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + palette + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_stats_show_paths_only_to_the_admin(make_app, built_index) -> None:
    client = make_app(built_index, WHYSIM_ADMIN_TOKEN=TOKEN).test_client()
    public = client.get("/api/stats").json
    assert public["data_dir"] is None and public["collections"] is None and public["vectors"] == 11
    assert str(built_index.root) not in client.get("/api/stats").get_data(as_text=True)
    admin = client.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json
    assert admin["data_dir"] == str(built_index.root) and len(admin["collections"]) == 1


def test_the_admin_token_comes_from_a_file_or_the_environment_never_the_command_line(tmp_path, monkeypatch) -> None:
    refused = whysim("serve", "--data-dir", tmp_path, "--admin-token", TOKEN, exit_code=2)
    assert "--admin-token is not accepted" in refused.output and "--admin-token-file" in refused.output
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    assert read_admin_token(token_file, None) == TOKEN
    token_file.write_text("\n")
    assert "is empty" in whysim("serve", "--data-dir", tmp_path, "--admin-token-file", token_file, exit_code=1).output
    monkeypatch.setenv("WHYSIM_ADMIN_TOKEN", TOKEN)
    assert read_admin_token(None, None) == TOKEN


def test_access_log_escapes_every_control_character(client, caplog) -> None:
    assert logfmt_value("/api/health") == "/api/health"
    assert logfmt_value('a\rb\x1b[2J\x00\x7f\x9b"\\') == '"a\\rb\\x1b[2J\\x00\\x7f\\x9b\\"\\\\"'
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        client.get("/api/x%0D%0Aforged=1%1B%00")
    [line] = [record.getMessage() for record in caplog.records if record.name == LOGGER_NAME]
    assert 'path="/api/x\\r\\nforged=1\\x1b\\x00"' in line
    assert not any(char in line for char in "\r\n\x1b\x00")


def test_decode_cost_is_read_from_the_header(tmp_path) -> None:
    assert decode_cost(png_header(7999, 7999), 448, 64_000_000) == 7999 * 7999 * 4  # RGB: 4 bytes a pixel in PIL
    assert decode_cost(png_header(4000, 4000, 3), 448, 64_000_000) == 4000 * 4000 * 5  # palette, then RGB
    assert decode_cost(png_header(9000, 9000), 448, 64_000_000) == 0  # over the pixel limit: refused unread
    assert decode_cost(b"not an image", 448, 64_000_000) == 0
    photo = encode(make_picture(3, (3200, 2400)))
    assert decode_cost(photo, 448, 64_000_000) == 800 * 600 * 4  # a JPEG is decoded at its draft size


def test_large_images_are_reduced_as_they_are_decoded() -> None:
    for mode in ("RGB", "RGBA", "L", "P"):
        picture = make_picture(5, (2000, 1000)).convert(mode)
        decoded = decode_image(encode(picture, "PNG"), draft_size=448)
        assert decoded.image.size == (1000, 500) and decoded.image.mode == "RGB"
        assert (decoded.width, decoded.height) == (2000, 1000)
    rotated = make_picture(5, (2000, 1000))
    exif = rotated.getexif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    decoded = decode_image(encode(rotated, "PNG", exif=exif), draft_size=448)
    assert decoded.image.size == (500, 1000) and (decoded.width, decoded.height) == (1000, 2000)


def test_uploads_share_a_decode_budget(make_app, built_index) -> None:
    budgeted = make_app(built_index, WHYSIM_DECODE_BUDGET_BYTES=2_000_000)
    client = budgeted.test_client()
    assert_json_error(upload(client, encode(make_picture(1, (1000, 800)), "PNG"), "q.png"), 413, "decode budget")
    small = encode(make_picture(2, (300, 200)), "PNG")
    budget: DecodeBudget = budgeted.extensions["whysim.search"].engine.decode_budget
    budget.wait_s = 0.2
    with budget.reserve(1_900_000):  # another request is decoding: this one waits, then gets 503
        response = upload(client, small, "q.png")
    assert_json_error(response, 503, "decoding other large images")
    assert response.headers["Retry-After"]
    assert upload(client, small, "q.png").status_code == 200 and budget.in_use == 0


def test_a_full_budget_makes_decodes_wait_their_turn() -> None:
    budget = DecodeBudget(100, wait_s=30)
    order: list[str] = []

    def second() -> None:
        with budget.reserve(50):
            order.append("second")

    with budget.reserve(80):
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(0.3)  # still waiting: 80 + 50 > 100
        order.append("first done")
    waiter.join()
    assert order == ["first done", "second"] and budget.in_use == 0
    budget.wait_s = 0.1
    with budget.reserve(80), pytest.raises(DecodeBusy), budget.reserve(60):
        pass


def test_freed_memory_goes_back_to_the_system() -> None:
    assert use_one_kept_heap() and release_freed_memory()  # glibc: mallopt and malloc_trim are there


# A third PyTorch batch on a worker thread (as the API's re-index and the model thread run it),
# in a fresh process with or without the server's heap settings: its minor page faults.
THREAD_FAULTS = """
import resource, sys, threading
import whysim.indexer
import torch
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.embedding import Embedder
from whysim.search.serving.memory import use_one_kept_heap
if sys.argv[1] == "server":
    use_one_kept_heap()
embedder = Embedder(build_branch(ModelRequest(input_size=448)), torch.device("cpu"), "torch")
batch = torch.zeros((16, 3, 448, 448), dtype=torch.uint8)  # activations over 64 MB a layer
faults = []
def run():
    embedder(batch)
    embedder(batch)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    embedder(batch)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=run)
thread.start()
thread.join()
print(faults[0])
"""


def test_pytorch_on_a_server_thread_reuses_its_memory_instead_of_faulting_it_in() -> None:
    """glibc maps a thread's large blocks afresh on every allocation unless the server keeps one
    heap (bench_server_heap.py: 2.5x slower embedding on a thread, all of it kernel time)."""
    def faults(policy: str) -> int:
        done = subprocess.run([sys.executable, "-c", THREAD_FAULTS, policy], capture_output=True, text=True,
                              check=True)
        return int(done.stdout.strip().splitlines()[-1])

    kept, default = faults("server"), faults("glibc defaults")
    assert kept * 20 < default, (kept, default)


def test_the_model_thread_yields_the_cores_to_requests(tmp_path) -> None:
    host = ModelHost(tmp_path)
    try:
        assert host.run(lambda: os.getpriority(os.PRIO_PROCESS, 0)) > os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        host.close()


def test_decoding_a_png_does_not_copy_it_at_full_size() -> None:
    """The display copy is made from the reduced picture, in place (one full-size buffer at most)."""
    image = Image.new("RGB", (4000, 3000), (10, 20, 30))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    from whysim.search.serving.pictures import read_picture
    picture = read_picture(buffer.getvalue(), 448)
    assert picture.display.size == (512, 384) and (picture.width, picture.height) == (4000, 3000)
