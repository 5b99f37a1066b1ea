"""Image sizes from data: URLs and the providers' published image-token formulas.

Sizes come from, in order: the caller's ``image_sizes`` mapping (URL -> (width,
height)), the header of a base64 ``data:`` URL (PNG, JPEG, GIF, WebP), or a
documented fallback: an unknown image is taken to be ``FALLBACK_IMAGE_SIZE``
(1024x1024) at high detail.

OpenAI (https://platform.openai.com/docs/guides/images-vision, "Calculating
costs"): tile models scale the image to fit in 2048x2048, then scale it down so
that its shortest side is at most 768 px, count 512 px tiles and charge
``base + tile * tiles`` (``base`` alone at low detail); patch models
(gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano) count 32 px patches, at most
1536, times a per-model multiplier.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping, Sequence

FALLBACK_IMAGE_SIZE = (1024, 1024)
_MAX_DIMENSION = 1 << 20  # larger claimed sizes are treated as corrupt headers

# (prefix, base tokens, tokens per 512 px tile); the longest prefix wins.
_OPENAI_TILE_PRICES: tuple[tuple[str, int, int], ...] = (
    ("gpt-4o-mini", 2833, 5667),
    ("gpt-4o", 85, 170),
    ("chatgpt-4o", 85, 170),
    ("gpt-4.1", 85, 170),
    ("gpt-4.5", 85, 170),
    ("gpt-4-turbo", 85, 170),
    ("gpt-4-vision", 85, 170),
    ("gpt-5", 70, 140),
    ("gpt-5-chat", 70, 140),
    ("o1", 75, 150),
    ("o1-pro", 75, 150),
    ("o3", 75, 150),
    ("computer-use", 65, 129),
)
# (prefix, multiplier) for the 32 px patch models.
_OPENAI_PATCH_MULTIPLIERS: tuple[tuple[str, float], ...] = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("o4-mini", 1.72),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
)
_PATCH = 32
_PATCH_CAP = 1536


def _longest_prefix(name: str, prefixes: Sequence[str]) -> int | None:
    best: int | None = None
    for index, prefix in enumerate(prefixes):
        if name.startswith(prefix) and (best is None or len(prefix) > len(prefixes[best])):
            best = index
    return best


def openai_image_tokens(model: str, width: int, height: int, detail: str) -> int:
    """Tokens OpenAI charges for one image of ``width`` x ``height`` pixels."""
    name = model.strip().lower().removeprefix("openai/")
    width, height = max(1, width), max(1, height)
    tile_index = _longest_prefix(name, [row[0] for row in _OPENAI_TILE_PRICES])
    patch_index = _longest_prefix(name, [row[0] for row in _OPENAI_PATCH_MULTIPLIERS])
    if patch_index is not None and (
        tile_index is None
        or len(_OPENAI_PATCH_MULTIPLIERS[patch_index][0]) > len(_OPENAI_TILE_PRICES[tile_index][0])
    ):
        return math.ceil(_patches(width, height) * _OPENAI_PATCH_MULTIPLIERS[patch_index][1])
    _, base, tile = _OPENAI_TILE_PRICES[tile_index] if tile_index is not None else ("", 85, 170)
    if detail == "low":
        return base
    return base + tile * _tiles(width, height)


def _tiles(width: int, height: int) -> int:
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(math.floor(w) / 512) * math.ceil(math.floor(h) / 512)


def _patches(width: int, height: int) -> int:
    patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
    if patches <= _PATCH_CAP:
        return patches
    shrink = math.sqrt(_PATCH * _PATCH * _PATCH_CAP / (width * height))
    shrink *= min(
        math.floor(width * shrink / _PATCH) / (width * shrink / _PATCH),
        math.floor(height * shrink / _PATCH) / (height * shrink / _PATCH),
    )
    resized = math.ceil(width * shrink / _PATCH) * math.ceil(height * shrink / _PATCH)
    return min(_PATCH_CAP, max(1, resized))


def anthropic_image_tokens(width: int, height: int) -> int:
    """Claude: about width*height/750 after scaling to at most 1568 px and ~1.15 MP."""
    w, h = float(max(1, width)), float(max(1, height))
    if max(w, h) > 1568:
        scale = 1568 / max(w, h)
        w, h = w * scale, h * scale
    if w * h > 1_150_000:
        scale = math.sqrt(1_150_000 / (w * h))
        w, h = w * scale, h * scale
    return max(1, math.ceil(w * h / 750))


def gemini_image_tokens(width: int, height: int) -> int:
    """Gemini 2.x: 258 tokens up to 384x384, else 258 per 768x768 tile."""
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(max(1, width) / 768) * math.ceil(max(1, height) / 768)


# --- sizes ----------------------------------------------------------------------


def image_size(
    url: str, image_sizes: Mapping[str, tuple[int, int]] | None
) -> tuple[int, int] | None:
    """The pixel size of the image at ``url``, if the caller told it or the data URL shows it."""
    if image_sizes:
        size = image_sizes.get(url)
        if size is not None:
            return size
    if url.startswith("data:"):
        return _data_url_size(url)
    return None


def _data_url_size(url: str) -> tuple[int, int] | None:
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    try:
        data = base64.b64decode(payload.strip(), validate=False)
    except (binascii.Error, ValueError):
        return None
    return sniff_image_size(data)


def sniff_image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF, JPEG or WebP header; None when not recognized."""
    try:
        size = _sniff(data)
    except (struct.error, IndexError, ValueError):
        return None
    if size is None:
        return None
    width, height = size
    if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
        return None
    return size


def _sniff(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    end = len(data)
    while index + 4 <= end:
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return int(width & 0x3FFF), int(height & 0x3FFF)
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None
