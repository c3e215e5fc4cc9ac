"""16-bit PNG labels (SYNTHIA's GT/LABELS): Pillow keeps only the high byte of 16-bit colour PNGs.

`read_png_channel` returns one channel at full depth: through OpenCV when installed; else through Pillow, decoding
the file twice, once for the high bytes and once (little-endian raw mode) for the low bytes; else through a small
numpy decoder of the PNG format (non-interlaced; rows with the Average or Paeth filter decode pixel by pixel,
slowly). `write_png` writes 8/16-bit PNGs with a chosen row filter (tests).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from diga.errors import DigaError

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


class PngError(DigaError, ValueError):
    """A file that is not a PNG this decoder reads (or is truncated)."""


def _chunks(data: bytes, path: str):
    if not data.startswith(_SIGNATURE):
        raise PngError(f"{path}: not a PNG file")
    offset = len(_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if len(body) != length:
            raise PngError(f"{path}: truncated PNG chunk {kind!r}")
        yield kind, body
        offset += 12 + length


def paeth(left: np.ndarray, up: np.ndarray, upleft: np.ndarray) -> np.ndarray:
    """The PNG Paeth predictor: whichever of left, up, upper-left is nearest to left + up - upleft."""
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    return np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int, path: str) -> np.ndarray:
    if raw.size != height * (stride + 1):
        raise PngError(f"{path}: image data has {raw.size} bytes, expected {height * (stride + 1)} (truncated?)")
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) & 0xFF
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind in (3, 4):
            cur = line.copy()
            left = np.zeros(bpp, dtype=np.int32)
            upleft = np.zeros(bpp, dtype=np.int32)
            for x in range(0, stride, bpp):
                up = prev[x:x + bpp]
                if kind == 3:
                    predictor = (left + up) >> 1
                else:
                    predictor = paeth(left, up, upleft)
                cur[x:x + bpp] = (cur[x:x + bpp] + predictor) & 0xFF
                left, upleft = cur[x:x + bpp], up
        else:
            raise PngError(f"{path}: unknown PNG filter type {kind} in row {y}")
        out[y] = cur
        prev = cur
    return out


def decode_png(path: str | Path) -> np.ndarray:
    """The full-depth pixel array (H x W x C, uint8 or uint16) of a non-interlaced PNG."""
    data = Path(path).read_bytes()
    header, idat = None, []
    for kind, body in _chunks(data, str(path)):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    if header is None or not idat:
        raise PngError(f"{path}: no IHDR or IDAT chunk (truncated?)")
    width, height, depth, colour, _, _, interlace = header
    if colour not in _CHANNELS or depth not in (8, 16) or interlace:
        raise PngError(f"{path}: unsupported PNG (colour type {colour}, depth {depth}, interlace {interlace})")
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    except zlib.error as error:
        raise PngError(f"{path}: corrupted image data ({error})") from None
    channels, size = _CHANNELS[colour], depth // 8
    pixels = _unfilter(raw, height, width * channels * size, channels * size, str(path))
    if size == 2:
        return pixels.view(">u2").astype(np.uint16).reshape(height, width, channels)
    return pixels.reshape(height, width, channels)


def read_png_channel(path: str | Path, channel: int = 0) -> np.ndarray:
    """One channel (0 = red, in RGB order) of a PNG at its full bit depth, as H x W."""
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        cv2 = None
    if cv2 is not None:
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise PngError(f"{path}: OpenCV cannot read this file (corrupted or truncated?)")
        if array.ndim == 2:
            return array
        return array[:, :, [2, 1, 0, 3][: array.shape[2]][channel]]  # OpenCV is BGR(A)
    array = _pillow_16bit(path)
    if array is None:
        array = decode_png(path)
    return array[:, :, channel] if array.ndim == 3 else array


def _pillow_16bit(path: str | Path) -> np.ndarray | None:
    """A 16-bit colour PNG through Pillow (which keeps only the high bytes): decoded twice, the second time with
    the little-endian raw mode, which reads the low bytes. None where Pillow's tiles are not the expected ones."""
    from PIL import Image

    halves = []
    for swap in (False, True):
        with Image.open(path) as image:
            tiles = list(getattr(image, "tile", []))
            if image.format != "PNG" or not tiles or any(not (isinstance(t[3], str) and t[3].endswith(";16B"))
                                                         for t in tiles):
                return None
            if swap:
                image.tile = [t._replace(args=t[3][:-1] + "L") for t in tiles]
            try:
                image.load()
            except (OSError, ValueError, AttributeError):
                return None
            halves.append(np.asarray(image).astype(np.uint16))
    high, low = halves
    return high * 256 + low


def _filter_rows(body: bytes, height: int, stride: int, bpp: int, kind: int) -> bytes:
    """Apply one PNG row filter (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth) to every row."""
    rows = np.frombuffer(body, dtype=np.uint8).reshape(height, stride).astype(np.int32)
    previous = np.vstack([np.zeros((1, stride), np.int32), rows[:-1]])
    left = np.hstack([np.zeros((height, bpp), np.int32), rows[:, :-bpp]])
    upleft = np.hstack([np.zeros((height, bpp), np.int32), previous[:, :-bpp]])
    if kind == 0:
        predictor = np.zeros_like(rows)
    elif kind == 1:
        predictor = left
    elif kind == 2:
        predictor = previous
    elif kind == 3:
        predictor = (left + previous) >> 1
    else:
        predictor = paeth(left, previous, upleft)
    filtered = ((rows - predictor) & 0xFF).astype(np.uint8)
    return b"".join(bytes([kind]) + filtered[y].tobytes() for y in range(height))


def write_png(path: str | Path, array: np.ndarray, filter_type: int = 0) -> None:
    """Write an H x W (x C) uint8 or uint16 array as a PNG, every row with `filter_type` (0-4)."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    depth = 16 if array.dtype == np.uint16 else 8
    body = array.astype(">u2" if depth == 16 else np.uint8).tobytes()
    stride = width * channels * depth // 8
    raw = _filter_rows(body, height, stride, channels * depth // 8, filter_type)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    Path(path).write_bytes(_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                           + chunk(b"IEND", b""))
