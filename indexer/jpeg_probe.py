"""Reads a JPEG's header (size, components, EXIF orientation) without decoding it.

The batched device decoder takes only plain 8-bit YCbCr or greyscale JPEGs that end with
an end-of-image marker; `probe_jpeg` says None for everything else (PNG, CMYK, 12-bit,
arithmetic or lossless coding, truncated or odd files), and those go to the PIL reader,
which either decodes them or records the reason. Being conservative costs only speed.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# Baseline, extended sequential and progressive Huffman frames: what nvJPEG and
# libjpeg-turbo both decode. Other SOF markers (lossless, arithmetic, hierarchical) are not.
SUPPORTED_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
PROGRESSIVE_FRAME = 0xC2
OTHER_FRAMES = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
START_OF_SCAN = 0xDA
APP1, APP14 = 0xE1, 0xEE
EXIF_ORIENTATION_TAG = 0x0112
# A truncated file cannot end with EOI: entropy-coded data never contains FF D9. Some
# writers leave a few padding bytes after it.
EOI_SEARCH_BYTES = 64


@dataclass(frozen=True)
class JpegHeader:
    width: int  # as stored, before EXIF orientation
    height: int
    components: int
    orientation: int  # EXIF 1..8
    progressive: bool = False

    @property
    def displayed_size(self) -> tuple[int, int]:
        """(width, height) as a viewer shows the picture, after EXIF rotation."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe_jpeg(data: bytes) -> JpegHeader | None:
    """The header of a JPEG the device decoder can take, or None."""
    if not data.startswith(SOI) or EOI not in data[-EOI_SEARCH_BYTES:]:
        return None
    orientation: int | None = 1
    seen_exif = False
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in STANDALONE:
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        segment = data[position + 4:position + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == APP1 and segment.startswith(b"Exif\x00\x00"):
            if seen_exif:
                return None  # which one wins is a decoder's choice: let PIL make it
            seen_exif = True
            orientation = _exif_orientation(segment[6:])
        elif marker == APP1 and b"Orientation" in segment:
            return None  # XMP orientation, which PIL honours too
        elif marker == APP14 and segment.startswith(b"Adobe") and len(segment) >= 12 and segment[11] == 0:
            return None  # RGB or CMYK stored without colour transform
        elif marker in SUPPORTED_FRAMES:
            return _frame_header(segment, orientation, progressive=marker == PROGRESSIVE_FRAME)
        elif marker in OTHER_FRAMES or marker == START_OF_SCAN:
            return None
        position += 2 + length
    return None


def _frame_header(segment: bytes, orientation: int | None, progressive: bool) -> JpegHeader | None:
    if len(segment) < 6 or orientation is None:
        return None
    precision, height, width, components = struct.unpack(">BHHB", segment[:6])
    if precision != 8 or components not in (1, 3) or not width or not height:
        return None
    return JpegHeader(width, height, components, orientation, progressive)


def _exif_orientation(tiff: bytes) -> int | None:
    """Orientation from the first IFD of an EXIF block: 1 when absent, None when unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    magic, offset = struct.unpack(order + "HI", tiff[2:8])
    if magic != 42 or offset + 2 > len(tiff):
        return None
    (entries,) = struct.unpack(order + "H", tiff[offset:offset + 2])
    for number in range(entries):
        start = offset + 2 + 12 * number
        if start + 12 > len(tiff):
            return None
        tag, kind, count = struct.unpack(order + "HHI", tiff[start:start + 8])
        if tag == EXIF_ORIENTATION_TAG:
            if kind != 3 or count < 1:  # SHORT
                return None
            (value,) = struct.unpack(order + "H", tiff[start + 8:start + 10])
            return value if 1 <= value <= 8 else None
    return 1
