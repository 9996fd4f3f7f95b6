"""Deterministic audio files, generated as a stream so a 1 GiB file costs 64 KiB of memory.

The bytes depend only on (seed, recording id, format, size, channels). A WAV is a RIFF/WAVE header
and 16-bit PCM noise; an MP3 is an ID3v2.4 tag then MPEG-1 Layer III frames (valid frame sync,
noise payload). Every block carries its index, so no two blocks of a file are equal.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from functools import lru_cache

FORMATS = ("mp3", "wav")
CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}
CHUNK = 64 * 1024
WAV_RATE = 8000
MP3_FRAME = 417  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 144 * 128000 // 44100
MP3_FRAMES_PER_BLOCK = CHUNK // MP3_FRAME


def _wav_header(size: int, channels: int) -> bytes:
    data = max(size - 44, 0)
    block_align = 2 * channels
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVE"
        + b"fmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, WAV_RATE, WAV_RATE * block_align, block_align, 16
        )
        + b"data"
        + struct.pack("<I", data)
    )


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _mp3_header(recording_id: str) -> bytes:
    text = b"\x03" + f"Telnyx sandbox recording {recording_id}".encode()
    frame = b"TIT2" + _syncsafe(len(text)) + b"\x00\x00" + text
    return b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame


def _wav_block(rng: random.Random) -> bytes:
    return rng.randbytes(CHUNK)


def _mp3_block(rng: random.Random, channels: int) -> bytes:
    # 0x64: joint stereo, original; 0xC4: mono, original.
    header = b"\xff\xfb\x90" + (b"\x64" if channels == 2 else b"\xc4")
    return b"".join(header + rng.randbytes(MP3_FRAME - 4) for _ in range(MP3_FRAMES_PER_BLOCK))


def iter_audio(
    seed: int,
    recording_id: str,
    fmt: str,
    size: int,
    channels: int = 1,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[bytes]:
    """Yield bytes [start, stop) of the file (whole file by default) in pieces of <= 64 KiB."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}")
    channels = 2 if channels == 2 else 1
    stop = size if stop is None else min(stop, size)
    if start >= stop:
        return
    rng = random.Random(f"{seed}:{recording_id}:{fmt}")
    if fmt == "wav":
        head, block, stamp_at = _wav_header(size, channels), _wav_block(rng), 0
    else:
        head, block, stamp_at = _mp3_header(recording_id), _mp3_block(rng, channels), 4
    pos = start
    if pos < len(head):
        piece = head[pos:stop]
        pos += len(piece)
        yield piece
    buf = bytearray(block)
    width = len(buf)
    while pos < stop:
        index, offset = divmod(pos - len(head), width)
        struct.pack_into("<Q", buf, stamp_at, index)
        n = min(stop - pos, width - offset)
        yield bytes(buf[offset : offset + n])
        pos += n


@lru_cache(maxsize=4096)
def audio_digest(
    seed: int, recording_id: str, fmt: str, size: int, channels: int = 1
) -> tuple[int, str]:
    """(size, sha256 hex) of a file, computed by streaming it once; cached."""
    h = hashlib.sha256()
    total = 0
    for piece in iter_audio(seed, recording_id, fmt, size, channels):
        h.update(piece)
        total += len(piece)
    return total, h.hexdigest()
