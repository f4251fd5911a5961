"""A memory budget shared by the uploads being decoded at once, charged from each file's header.

A small file can claim many pixels (a 62 KB PNG of 7999x7999 decodes to 256 MB), so what one
decode costs is estimated from the header before any pixel is decoded, and concurrent decodes
together may hold at most the budget: a request whose estimate does not fit waits for others to
finish (up to `wait_s`, then DecodeBusy: 503 with Retry-After), and one that could never fit is
refused outright (ImageTooLarge: 413). When the last decode of a burst finishes, the freed memory
is handed back to the system (search/serving/memory.py).
"""
from __future__ import annotations

import io
import math
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from whysim.indexer.imaging import ImageTooLarge, decoded_size
from whysim.search.serving.memory import release_freed_memory

DEFAULT_DECODE_BUDGET_BYTES = 384 * 2**20
DEFAULT_DECODE_WAIT_S = 30.0
# PIL keeps RGB, RGBA, CMYK, LA and 32-bit modes in 4 bytes a pixel, and 1, L and P in one byte.
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
WIDE_PIXEL_BYTES = 4
# Modes decoded to RGB at full size before they can be reduced (Image.reduce refuses them).
CONVERTED_FIRST = frozenset({"1", "P", "PA", "I;16", "I;16B", "I;16L", "I;16N"})


class DecodeBusy(RuntimeError):
    """The decode budget stayed full for the whole wait; `retry_after_s` suggests when to retry."""

    def __init__(self, waited_s: float, retry_after_s: int) -> None:
        super().__init__(f"the server is decoding other large images (waited {waited_s:.0f} s for memory); "
                         f"try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def decode_cost(data: bytes, draft_size: int | None, max_pixels: int) -> int:
    """Bytes that decoding `data` (as whysim.indexer.imaging.decode_image does) holds at its peak,
    read from the header only; 0 for what decoding refuses before decoding a pixel (unknown
    formats, more than `max_pixels`), so that it gives its own reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.size[0] * image.size[1] > max_pixels:
                return 0
            width, height = decoded_size(image, draft_size)
            mode = image.mode
    except Exception:  # noqa: BLE001 - any unreadable header: decode_image gives the reason
        return 0
    pixels = width * height
    cost = pixels * BYTES_PER_PIXEL.get(mode, WIDE_PIXEL_BYTES)
    if mode in CONVERTED_FIRST:
        cost += pixels * WIDE_PIXEL_BYTES
    return cost


class DecodeBudget:
    def __init__(self, capacity_bytes: int = DEFAULT_DECODE_BUDGET_BYTES, wait_s: float = DEFAULT_DECODE_WAIT_S) -> None:
        if capacity_bytes < 1:
            raise ValueError("the decode budget must be at least 1 byte")
        self.capacity = capacity_bytes
        self.wait_s = wait_s
        self._in_use = 0
        self._decodes = 0
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        """Holds `cost` bytes of the budget for the block; waits, then DecodeBusy, when they do not fit."""
        if cost > self.capacity:
            raise ImageTooLarge(f"decoding this image needs about {cost / 2**20:.0f} MB, more than the server's "
                                f"decode budget of {self.capacity / 2**20:.0f} MB; send a smaller image")
        started = time.monotonic()
        with self._changed:
            fits = self._changed.wait_for(lambda: self._in_use + cost <= self.capacity, self.wait_s)
            if not fits:
                waited = time.monotonic() - started
                raise DecodeBusy(waited, max(1, math.ceil(self.wait_s / 4)))
            self._in_use += cost
            self._decodes += 1
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= cost
                self._decodes -= 1
                last = self._decodes == 0
                self._changed.notify_all()
            if last:
                release_freed_memory()
