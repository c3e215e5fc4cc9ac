"""Small fake dataset archives with the real names and inner layouts, and a loopback HTTP server.

- Cityscapes: gtFine_trainvaltest.zip (gtFine/<split>/<city>/<stem>_gtFine_labelIds.png) and
  leftImg8bit_trainvaltest.zip (leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png);
- GTA5: 01_images.zip (images/NNNNN.png) and 01_labels.zip (labels/NNNNN.png, palette PNGs whose index is the
  labelId and whose palette colours are NOT the ids), with broken pairs on request;
- SYNTHIA: a zip of RAND_CITYSCAPES/{RGB,GT/LABELS}/NNNNNNN.png with 16-bit 3-channel labels (class id in the
  first channel), optionally with Windows backslash member names;
- BDD100K: bdd100k_images_10k.zip (bdd100k/images/10k/<split>/<id>.jpg) and bdd100k_sem_seg_labels_trainval.zip
  (bdd100k/labels/sem_seg/masks/<split>/<id>.png, one-channel trainIds, 255 ignore);
- Mapillary Vistas v1.2: mapillary-vistas-dataset_public_v1.2.zip ({training,validation}/{images/<id>.jpg,
  labels/<id>.png}, palette PNGs whose index is one of the 66 ids).
"""

from __future__ import annotations

import http.server
import io
import os
import struct
import threading
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

# A street layout in Cityscapes labelIds: sky, building, a car, road, sidewalk; and its SYNTHIA ids.
LABEL_IDS = {"sky": 23, "building": 11, "car": 26, "road": 7, "sidewalk": 8, "unlabeled": 0}
SYNTHIA_IDS = {"sky": 1, "building": 2, "car": 8, "road": 3, "sidewalk": 4, "unlabeled": 0}
COLOURS = {"sky": (110, 170, 235), "building": (120, 110, 90), "car": (40, 60, 185), "road": (110, 100, 140),
           "sidewalk": (200, 120, 200), "unlabeled": (0, 0, 0)}


def layout(index: int, height: int, width: int) -> np.ndarray:
    """An H x W array of class names' indices into LABEL_IDS' keys (a simple random street scene)."""
    rng = np.random.default_rng(index)
    names = list(LABEL_IDS)
    out = np.full((height, width), names.index("road"))
    horizon = int(height * rng.uniform(0.3, 0.5))
    out[:horizon] = names.index("sky")
    top = max(1, horizon - int(height * 0.2))
    out[top:horizon + height // 8] = names.index("building")
    out[int(height * 0.75):, : width // 5] = names.index("sidewalk")
    x = int(rng.integers(0, width - width // 4))
    out[horizon + 2:horizon + height // 4, x:x + width // 4] = names.index("car")
    out[0, 0] = names.index("unlabeled")
    return out


def render(classes: np.ndarray, index: int, shift: bool) -> np.ndarray:
    rng = np.random.default_rng(1000 + index)
    table = np.array([COLOURS[n] for n in LABEL_IDS], dtype=np.float64)
    if shift:
        table = table[:, ::-1] * 0.8 + 20
    image = table[classes] + rng.normal(0, 6, size=(*classes.shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def ids_of(classes: np.ndarray, table: dict[str, int]) -> np.ndarray:
    return np.array([table[n] for n in LABEL_IDS])[classes]


def png_bytes(array: np.ndarray, mode: str | None = None, palette: list[int] | None = None) -> bytes:
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png16_bytes(rgb: np.ndarray) -> bytes:
    """A 16-bit colour PNG of an H x W x 3 array (SYNTHIA's label format, which Pillow cannot write), built from
    the PNG format itself (unfiltered rows of big-endian samples), independently of the OpenCV reader."""
    height, width, _ = rgb.shape
    rows = np.zeros((height, 1 + width * 6), dtype=np.uint8)  # byte 0 of each row: filter type 0 (none)
    rows[:, 1:] = np.ascontiguousarray(rgb, dtype=">u2").view(np.uint8).reshape(height, -1)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # depth 16, colour type 2 (RGB)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes()))
            + chunk(b"IEND", b""))


def gta_palette() -> list[int]:
    """A palette whose colour for index i is not (i, i, i): reading colours instead of indices fails the tests."""
    return [(i * 37 + c * 91) % 256 for i in range(256) for c in range(3)]


def make_cityscapes(folder: Path, cities: dict[str, dict[str, int]] | None = None, height: int = 32,
                    width: int = 64, truncated_labels: tuple[str, ...] = ()) -> list[Path]:
    """gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip; truncated_labels: stems ('aachen_000000_000001')
    whose label PNG is cut in half (a damaged label, its image intact)."""
    cities = cities or {"train": {"aachen": 4, "bochum": 2}, "val": {"frankfurt": 2, "lindau": 2}}
    folder.mkdir(parents=True, exist_ok=True)
    gt, left = folder / "gtFine_trainvaltest.zip", folder / "leftImg8bit_trainvaltest.zip"
    index = 0
    with zipfile.ZipFile(gt, "w") as gt_zip, zipfile.ZipFile(left, "w") as left_zip:
        gt_zip.writestr("README", "fake gtFine\n")
        left_zip.writestr("license.txt", "fake\n")
        for split, per_city in cities.items():
            for city, count in per_city.items():
                for frame in range(count):
                    stem = f"{city}_000000_{frame:06d}"
                    classes = layout(index, height, width)
                    label = png_bytes(ids_of(classes, LABEL_IDS).astype(np.uint8))
                    if stem in truncated_labels:
                        label = label[: len(label) // 2]
                    gt_zip.writestr(f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", label)
                    left_zip.writestr(f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                                      png_bytes(render(classes, index, shift=True)))
                    index += 1
    return [gt, left]


def make_gta5(folder: Path, ids: list[int], broken: dict[int, str] | None = None, height: int = 32,
              width: int = 64) -> list[Path]:
    """01_images.zip / 01_labels.zip; broken: id -> 'size' (label of another size), 'missing' (no label),
    'rgb' (an RGB label instead of a palette one), 'truncated' (the label PNG cut in half)."""
    broken = broken or {}
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = folder / "01_images.zip", folder / "01_labels.zip"
    with zipfile.ZipFile(images, "w") as image_zip, zipfile.ZipFile(labels, "w") as label_zip:
        for number in ids:
            classes = layout(number, height, width)
            image_zip.writestr(f"images/{number:05d}.png", png_bytes(render(classes, number, shift=False)))
            ids_map = ids_of(classes, LABEL_IDS).astype(np.uint8)
            problem = broken.get(number)
            if problem == "missing":
                continue
            if problem == "size":
                ids_map = ids_map[: height // 2]
            if problem == "rgb":
                label = png_bytes(np.dstack([ids_map] * 3))
            else:
                label = png_bytes(ids_map, "P", gta_palette())
            if problem == "truncated":
                label = label[: len(label) // 2]
            label_zip.writestr(f"labels/{number:05d}.png", label)
    return [images, labels]


def make_synthia(folder: Path, count: int, backslash: bool = False, height: int = 38, width: int = 64,
                 rar: bool = False) -> Path:
    """SYNTHIA-RAND-CITYSCAPES as a zip, or (rar=True) as the RAR the real dataset ships, Windows-made."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"SYNTHIA_RAND_CITYSCAPES.{'rar' if rar else 'zip'}"
    sep = "\\" if backslash or rar else "/"
    members = {}
    for number in range(count):
        classes = layout(number, height, width)
        ids = ids_of(classes, SYNTHIA_IDS).astype(np.uint16)
        instance = np.random.default_rng(number).integers(0, 60000, size=ids.shape).astype(np.uint16)
        name = f"{number:07d}.png"
        members[sep.join(["RAND_CITYSCAPES", "GT", "LABELS", name])] = png16_bytes(np.dstack([ids, instance,
                                                                                         instance // 2]))
        members[sep.join(["RAND_CITYSCAPES", "RGB", name])] = png_bytes(render(classes, number, False))
    if rar:
        write_rar4_stored(archive, members)
    else:
        with zipfile.ZipFile(archive, "w") as handle:
            for name, data in members.items():
                handle.writestr(name, data)
    return archive


def jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_bdd100k(folder: Path, labels: dict[str, np.ndarray], train: int = 1) -> list[Path]:
    """The two BDD100K zips: a val pair per entry of `labels` (id -> trainId map, written as is) plus `train`
    train pairs, which preparation leaves out."""
    folder.mkdir(parents=True, exist_ok=True)
    images, masks = folder / "bdd100k_images_10k.zip", folder / "bdd100k_sem_seg_labels_trainval.zip"
    pairs = [("val", stem, label) for stem, label in labels.items()]
    pairs += [("train", f"train{i:04d}", np.zeros((8, 16), np.uint8)) for i in range(train)]
    with zipfile.ZipFile(images, "w") as image_zip, zipfile.ZipFile(masks, "w") as mask_zip:
        for index, (split, stem, label) in enumerate(pairs):
            image_zip.writestr(f"bdd100k/images/10k/{split}/{stem}.jpg",
                               jpeg_bytes(render(np.zeros(label.shape, int), index, shift=True)))
            mask_zip.writestr(f"bdd100k/labels/sem_seg/masks/{split}/{stem}.png", png_bytes(label, "L"))
    return [images, masks]


def make_mapillary(folder: Path, labels: dict[str, np.ndarray]) -> Path:
    """mapillary-vistas-dataset_public_v1.2.zip with a validation pair per entry of `labels` (id -> raw v1.2 ids,
    written as palette indices) and one training pair."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "mapillary-vistas-dataset_public_v1.2.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("config.json", "{}")
        for index, (split, stem, label) in enumerate([("validation", s, lab) for s, lab in labels.items()]
                                                     + [("training", "train0", np.zeros((8, 16), np.uint8))]):
            handle.writestr(f"{split}/images/{stem}.jpg", jpeg_bytes(render(np.zeros(label.shape, int), index, True)))
            handle.writestr(f"{split}/labels/{stem}.png", png_bytes(label, "P", gta_palette()))
    return archive


def _rar_block(head_type: int, flags: int, body: bytes) -> bytes:
    """A RAR 4 block: CRC16 (the low half of the CRC32 of what follows it), type, flags, size, body."""
    header = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header


def write_rar4_stored(path: Path, members: dict[str, bytes]) -> None:
    """A RAR 4 archive with uncompressed ("stored") members, as a Windows host writes it (backslash paths).

    Free tools cannot create RAR, but its version-4 container is simple enough to write for stored files, so the
    real extractors (bsdtar, unar) are tested on real RAR input rather than on a renamed zip.
    """
    out = bytearray(b"Rar!\x1a\x07\x00")                      # marker block
    out += _rar_block(0x73, 0x0000, bytes(6))                   # main archive header
    for name, data in members.items():
        raw = name.encode()
        # packed and unpacked size, host OS 2 (Windows), CRC32, DOS time, version 2.9, method 0x30 (store),
        # name length, attributes (archive); flag 0x8000: data follows the header
        body = struct.pack("<IIBIIBBHI", len(data), len(data), 2, zlib.crc32(data), 0x21000000, 29, 0x30,
                           len(raw), 0x20) + raw
        out += _rar_block(0x74, 0x8000, body) + data
    out += _rar_block(0x7B, 0x4000, b"")                        # end of archive
    path.write_bytes(bytes(out))


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET with Range support (unless ignore_range: the whole file, as some servers answer a resume); the first
    request for a file in `cut` sends half the body and closes."""

    root: Path
    cut: set[str]
    ignore_range: bool
    log: list[tuple[str, str | None]]

    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.lstrip("/")
        path = self.root / name
        self.log.append((name, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        header = self.headers.get("Range")
        if header and not self.ignore_range:
            start = int(header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.cut:
            self.cut.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@contextmanager
def serve(root: Path, cut: set[str] | None = None, ignore_range: bool = False):
    """Serve `root` on 127.0.0.1 (a free port) in a thread; yield (base URL, request log); stop on exit."""
    handler = type("Handler", (_Handler,), {"root": root, "cut": set(cut or ()), "log": [],
                                            "ignore_range": ignore_range})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler.log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def corrupt_one_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    where = len(data) // 2 if offset is None else offset
    data[where] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path)
