"""Files for the fault suite: hand-written PNGs (16-bit, decompression bombs) and the corruptions that every
reader must turn into one message naming the file."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG of `pixels` (uint16, HxW grey or HxWx3 RGB): PIL cannot write 16-bit RGB."""
    height, width = pixels.shape[:2]
    colour_type = 0 if pixels.ndim == 2 else 2
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )
    return path


def write_png_bomb(path: Path, width: int = 12_000, height: int = 12_000) -> Path:
    """A small file that decodes to width x height grey pixels of zeros (144 MB by default)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )
    return path


def _empty(good: bytes) -> bytes:
    return b""


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _random_bytes(good: bytes) -> bytes:
    return np.random.default_rng(len(good)).integers(0, 256, max(len(good), 64), dtype=np.uint8).tobytes()


def _utf16(good: bytes) -> bytes:
    return "le texte n'est pas en UTF-8: \u00e9t\u00e9 \u4eba".encode("utf-16")


def _latin1(good: bytes) -> bytes:
    return "caf\u00e9 = 1\n0 0.5 0.5 0.1 0.1\n".encode("latin-1")


def _other_format(good: bytes) -> bytes:  # a text file where a binary one belongs, or the reverse
    return b"\x89PNG\r\n\x1a\n" + b"\x00" * 40 if good[:1] in (b"{", b"[", b"#", b"0") else b'{"a": 1}'


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "empty": _empty,
    "truncated": _truncated,
    "random bytes": _random_bytes,
    "utf-16 text": _utf16,
    "latin-1 text": _latin1,
    "another format": _other_format,
}
