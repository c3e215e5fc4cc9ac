"""ToyCity: a procedurally generated street-scene source -> target domain-shift benchmark.

Why it exists
-------------
DiGA needs a GTA5/SYNTHIA -> Cityscapes pair to show its stage ordering (source-only < warm-up <
self-training). No offline package ships street scenes with semantic labels, so ToyCity draws them:
the same 19 Cityscapes trainIds (from `diga.data.labels`), the same layout prior in both domains, and
an appearance shift that photometric jitter alone cannot undo. Everything is numpy + pillow; 600
images of 64x128 take a few seconds on one CPU core.

Layout (shared by both domains, `sample_layout`)
-----------------------------------------------
A pinhole camera one "camera height" (ch, ~1.5 m) above a flat ground plane. With the horizon at
row y_h ~ U(0.38, 0.50)*H, a vanishing point x_v and G = H - y_h, a ground point at lateral offset u
(ch) and distance z (ch) lands at column x_v + u*G/z and row y_h + G/z, and an object of height h ch
standing there spans h*G/z rows. Ground bands are therefore intervals of u = (x - x_v)/(y - y_h),
and every object is scaled by depth for free. Drawn with the painter's algorithm, back to front:

* sky (10) everywhere, then a distant skyline of building rectangles and tree crowns at the horizon;
* the ground: a road (0) trapezoid to the vanishing point, flanked on each side by optional terrain
  (9) verges and sidewalks (1); beyond the street line, terrain;
* each side is "urban" (building (2) facades on a vertical plane, with gaps showing the sky) or
  "park" (a vegetation (8) tree line, sometimes with buildings set further back);
* walls (3) as low boxes in front of the facades, fences (4) as bands along the sidewalk;
* objects sorted far to near: street trees (vegetation ellipses on trunks), poles (5) 1-2 px wide
  topped by a traffic light (6, vertical box) or a sign (7, disc or triangle), cars (13), trucks
  (14), buses (15), a rare train (16, p=0.05), motorcycles (17) and bicycles (18) as wheel pairs,
  persons (11) on the sidewalks and riders (12) on the bicycles and motorcycles.

The pixel shares follow Cityscapes' long tail: road, building, vegetation and sky are the largest
classes; rider, motorcycle, light and train are rare (see the manifest's class_pixel_share).

Source style ("GTA-like", `render_source`)
------------------------------------------
One flat colour per class from `SOURCE_COLOURS` (our own table, deliberately not the Cityscapes
palette), a per-image x per-class colour jitter of about 3 % (a per-instance jitter would need
instance ids, which a trainId layout does not carry), a vertical sky gradient, hard edges and a
sub-quantisation pixel noise (sigma 0.002). Colour is a perfect cue: the shortcut source-only learns.

Target style ("Cityscapes-like", `render_target`)
------------------------------------------------
The source rendering of a colour table whose confusable classes are pulled toward a partner, then
appearance effects, every one scaled by the single knob `shift` in [0, 1]. The constants were
calibrated in a stand-alone toy experiment (reference/toy-experiment.md), with the class pull
lowered from 0.6 to 0.4 so the target ceiling (the oracle) is less limited by colour collisions:

1. class pull by 0.4*shift: sidewalk->road, terrain->vegetation, wall->building, fence->wall,
   truck/bus->car, train->bus, rider->person, motorcycle->bicycle, traffic light->traffic sign;
2. per-class luminance textures of amplitude 0.18*shift: value noise (road, terrain, vegetation),
   window grids (building), cross-hatched stripes (fence), linear gradients (every other class);
3. a global hue rotation of 60+60*shift degrees about the grey axis (outside DiGA's +-36 degree hue
   jitter) and desaturation by x(1 - 0.5*shift). The rotation is ramped in linearly below
   shift=0.2 so that the style is continuous in `shift` and the identity at shift=0;
4. per-image contrast compression (x[0.65, 1]) and brightness (+-0.1), both scaled by shift;
5. a Gaussian blur of sigma 1.0*shift (separable numpy convolution, reflect padding);
6. sensor noise of sigma 0.04*shift.

At shift=0 the target renderer returns exactly the source-style rendering (same colour table, no
texture, no effects), so 0 means "no domain shift" and 1 the full shift.

Determinism
-----------
`generate_sample` seeds `np.random.default_rng([seed, domain_id, split_id, index])` (no Python
`hash()`), so every image is reproducible on its own, in any order. The layout is drawn first, so
the labels of a target image do not depend on `shift`.

On disk (`write_toycity`)
-------------------------
The layout the prepared real datasets use: per-domain list files of "image label" lines relative to
the domain root (source in a GTA-like images/labels tree, target in a Cityscapes-like
leftImg8bit/gtFine tree) and a manifest.json, all written atomically.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from diga.config import ConfigError
from diga.data.labels import CLASS_NAMES, NUM_CLASSES, class_id

MANIFEST_VERSION = 1

ROAD, SIDEWALK, BUILDING = (class_id(n) for n in ("road", "sidewalk", "building"))
WALL, FENCE = (class_id(n) for n in ("wall", "fence"))
POLE, LIGHT, SIGN = (class_id(n) for n in ("pole", "traffic light", "traffic sign"))
VEGETATION, TERRAIN, SKY = (class_id(n) for n in ("vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS = (class_id(n) for n in ("person", "rider", "car", "truck", "bus"))
TRAIN, MOTORCYCLE, BICYCLE = (class_id(n) for n in ("train", "motorcycle", "bicycle"))

DOMAIN_IDS = {"source": 0, "target": 1}
SPLIT_IDS = {"train": 0, "val": 1}

# ----------------------------------------------------------------------------------------------
# Style constants
# ----------------------------------------------------------------------------------------------

# Flat source colours, one per trainId (RGB). Our own table: distinct hues, none equal to the
# Cityscapes palette, so that a model trained on the source can read the class off the colour.
_SOURCE_TABLE = {
    "road": (110, 100, 140), "sidewalk": (200, 120, 200), "building": (120, 110, 90),
    "wall": (175, 150, 105), "fence": (215, 185, 140), "pole": (150, 150, 170),
    "traffic light": (250, 200, 40), "traffic sign": (225, 245, 60), "vegetation": (60, 150, 50),
    "terrain": (165, 215, 105), "sky": (110, 170, 235), "person": (230, 60, 80),
    "rider": (250, 120, 40), "car": (40, 60, 185), "truck": (30, 125, 150), "bus": (20, 155, 110),
    "train": (95, 40, 125), "motorcycle": (165, 30, 205), "bicycle": (140, 30, 60),
}
SOURCE_COLOURS = np.array([_SOURCE_TABLE[name] for name in CLASS_NAMES], dtype=np.float64) / 255.0
SKY_HORIZON_COLOUR = np.array([215, 225, 240], dtype=np.float64) / 255.0  # the sky fades to this

SOURCE_JITTER = 0.03        # per-image x per-class colour jitter (fraction), uniform +-
SOURCE_NOISE = 0.002        # pixel noise sigma, below one 8-bit level: "almost no noise"

# Target: confusable class -> the partner its colour is pulled toward.
CONFUSABLE_PARTNERS = {
    "sidewalk": "road", "terrain": "vegetation", "wall": "building", "fence": "wall", "truck": "car",
    "bus": "car", "train": "bus", "rider": "person", "motorcycle": "bicycle", "traffic light": "traffic sign",
}
PULL_PER_SHIFT = 0.4        # pull fraction at shift=1
TEXTURE_PER_SHIFT = 0.18    # luminance texture amplitude at shift=1
HUE_BASE_DEG, HUE_PER_SHIFT_DEG = 60.0, 60.0
HUE_RAMP = 0.2              # below this shift the rotation ramps linearly to 0 (continuity at 0)
DESAT_PER_SHIFT = 0.5       # saturation x (1 - 0.5*shift)
CONTRAST_RANGE = (0.65, 1.0)
BRIGHTNESS_RANGE = 0.1
BLUR_PER_SHIFT = 1.0        # Gaussian blur sigma (px) at shift=1
NOISE_PER_SHIFT = 0.04      # sensor noise sigma at shift=1
_LUMA = np.array([0.299, 0.587, 0.114])


def _pulled_table(shift: float) -> np.ndarray:
    """Target base colours: each confusable class moved toward its partner's source colour."""
    table = SOURCE_COLOURS.copy()
    pull = PULL_PER_SHIFT * shift
    for name, partner in CONFUSABLE_PARTNERS.items():
        c, p = class_id(name), class_id(partner)
        table[c] = (1.0 - pull) * SOURCE_COLOURS[c] + pull * SOURCE_COLOURS[p]
    return table


# ----------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyCitySpec:
    """What to generate. Validated on construction (ValueError naming the field and the fix)."""

    seed: int = 0            # data seed
    height: int = 64
    width: int = 128
    n_source: int = 300      # source train images
    n_target_train: int = 200
    n_target_val: int = 100
    shift: float = 1.0       # 0 = target looks like source, 1 = full shift

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def integer(name: str, minimum: int, why: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"ToyCitySpec.{name} must be an integer, got {value!r}; {why}")
            if value < minimum:
                raise ConfigError(f"ToyCitySpec.{name}={value} is too small; set {name} >= {minimum} ({why})")

        integer("seed", 0, "the data seed must be a non-negative integer")
        integer("height", 32, "smaller canvases cannot hold the scene's thin objects")
        integer("width", 64, "smaller canvases cannot hold the scene's thin objects")
        integer("n_source", 1, "each split needs at least one image")
        integer("n_target_train", 1, "each split needs at least one image")
        integer("n_target_val", 1, "each split needs at least one image")
        shift = self.shift
        if isinstance(shift, bool) or not isinstance(shift, (int, float)):
            raise ConfigError(f"ToyCitySpec.shift must be a number in [0, 1], got {shift!r}")
        if not (0.0 <= float(shift) <= 1.0):
            raise ConfigError(f"ToyCitySpec.shift={shift} is outside [0, 1]; set shift between 0 (no domain "
                             "shift) and 1 (full shift)")

    def count(self, domain: str, split: str) -> int:
        return {("source", "train"): self.n_source, ("target", "train"): self.n_target_train,
                ("target", "val"): self.n_target_val}[(domain, split)]


# ----------------------------------------------------------------------------------------------
# Layout sampler
# ----------------------------------------------------------------------------------------------


class _Canvas:
    """A trainId map plus the camera geometry, with depth-aware drawing primitives."""

    def __init__(self, height: int, width: int, y_h: float, x_v: float):
        self.H, self.W = height, width
        self.y_h, self.x_v = y_h, x_v
        self.G = height - y_h                          # rows from the horizon to the bottom (z = 1)
        self.lab = np.full((height, width), SKY, dtype=np.uint8)
        self.rows = np.arange(height, dtype=np.float64) + 0.5
        self.cols = np.arange(width, dtype=np.float64) + 0.5

    # geometry: lateral u, height h and distance z in camera heights
    def x(self, u: float, z: float) -> float:
        return self.x_v + u * self.G / z

    def y(self, h: float, z: float) -> float:
        return self.y_h + (1.0 - h) * self.G / z

    def px(self, size: float, z: float) -> float:
        return size * self.G / z

    # primitives in pixel coordinates (pixel centres inside the shape are filled)
    def _span(self, lo: float, hi: float, n: int) -> tuple[int, int]:
        return max(0, math.ceil(lo - 0.5)), min(n, math.ceil(hi - 0.5))

    def rect(self, x0: float, y0: float, x1: float, y1: float, cls: int) -> None:
        c0, c1 = self._span(x0, x1, self.W)
        r0, r1 = self._span(y0, y1, self.H)
        if c1 > c0 and r1 > r0:
            self.lab[r0:r1, c0:c1] = cls

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, cls: int, inner: float = 0.0) -> None:
        """Filled ellipse; `inner` > 0 leaves a hole of that relative radius (a ring)."""
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        c0, c1 = self._span(cx - rx, cx + rx, self.W)
        r0, r1 = self._span(cy - ry, cy + ry, self.H)
        if c1 <= c0 or r1 <= r0:
            return
        dx = (self.cols[c0:c1] - cx) / rx
        dy = (self.rows[r0:r1, None] - cy) / ry
        rr = dx * dx + dy * dy
        mask = rr <= 1.0
        if inner > 0.0:
            mask &= rr >= inner * inner
        self.lab[r0:r1, c0:c1][mask] = cls

    def triangle(self, cx: float, cy: float, r: float, cls: int) -> None:
        """An upward equilateral-ish triangle of half-width r centred at (cx, cy)."""
        r = max(r, 1.0)
        c0, c1 = self._span(cx - r, cx + r, self.W)
        r0, r1 = self._span(cy - r, cy + r, self.H)
        if c1 <= c0 or r1 <= r0:
            return
        t = (self.rows[r0:r1, None] - (cy - r)) / (2.0 * r)          # 0 at the apex, 1 at the base
        mask = np.abs(self.cols[c0:c1] - cx) <= t * r + 0.5
        self.lab[r0:r1, c0:c1][mask] = cls

    def side_plane(self, u: float, z_near: float, z_far: float,
                   height: float | Callable[[np.ndarray], np.ndarray], cls: int) -> None:
        """A vertical plane parallel to the street at lateral u, from z_near to z_far, standing on the ground.

        `height` is in camera heights, a constant or a function of the per-column distance z.
        """
        if u == 0.0 or z_far <= z_near:
            return
        lo, hi = sorted((self.x(u, z_near), self.x(u, z_far)))
        c0, c1 = self._span(lo, hi, self.W)
        if c1 <= c0:
            return
        z = u * self.G / (self.cols[c0:c1] - self.x_v)
        h = height(z) if callable(height) else height
        bottom = self.y_h + self.G / z
        top = bottom - h * self.G / z
        mask = (self.rows[:, None] >= top) & (self.rows[:, None] < bottom)
        self.lab[:, c0:c1][mask] = cls


def _ground(canvas: _Canvas, bands: list[tuple[float, float, int]], far: int) -> None:
    """Fill every row below the horizon by lateral ground coordinate u = (x - x_v) / (y - y_h)."""
    first = math.ceil(canvas.y_h - 0.5)
    if canvas.rows[first] <= canvas.y_h:
        first += 1
    if first >= canvas.H:
        return
    u = (canvas.cols[None, :] - canvas.x_v) / (canvas.rows[first:, None] - canvas.y_h)
    ground = np.full(u.shape, far, dtype=np.uint8)
    for lo, hi, cls in bands:
        ground[(u >= lo) & (u < hi)] = cls
    canvas.lab[first:] = ground


def sample_layout(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Draw one street-scene trainId map (uint8, HxW, values 0..18); see the module docstring."""
    y_h = rng.uniform(0.38, 0.50) * height
    x_v = rng.uniform(0.35, 0.65) * width
    cv = _Canvas(height, width, y_h, x_v)
    scale = height / 64.0

    # --- distant skyline and tree line at the horizon (behind everything else)
    if rng.random() < 0.75:
        for _ in range(rng.integers(2, 7)):
            cx = rng.uniform(0.0, width)
            half = rng.uniform(1.5, 7.0) * scale
            cv.rect(cx - half, y_h - rng.uniform(0.08, 0.35) * y_h, cx + half, y_h + 1, BUILDING)
    if rng.random() < 0.5:
        for _ in range(rng.integers(2, 6)):
            r = rng.uniform(1.5, 4.0) * scale
            cv.ellipse(rng.uniform(0.0, width), y_h - 0.3 * r, 1.4 * r, r, VEGETATION)

    # --- the street cross-section, per side (sign -1 = left, +1 = right), in camera heights
    road_edge = {-1: -rng.uniform(1.4, 2.8), 1: rng.uniform(1.4, 2.8)}
    bands: list[tuple[float, float, int]] = []
    sides = {}
    for s in (-1, 1):
        kind = "urban" if rng.random() < 0.55 else "park"
        edge = abs(road_edge[s])
        layers = []                                                   # (width, class) outward from the road
        if rng.random() < 0.2:
            layers.append((rng.uniform(0.3, 0.8), TERRAIN))           # verge between road and sidewalk
        sidewalk_inner = edge + sum(w for w, _ in layers)
        layers.append((rng.uniform(0.8, 2.0), SIDEWALK))
        sidewalk_outer = edge + sum(w for w, _ in layers)
        if kind == "park":
            layers.append((rng.uniform(1.0, 4.0), TERRAIN))
        elif rng.random() < 0.35:
            layers.append((rng.uniform(0.3, 1.2), TERRAIN))
        pos = edge
        for w, cls in layers:
            a, b = s * pos, s * (pos + w)
            bands.append((min(a, b), max(a, b), cls))
            pos += w
        sides[s] = {"kind": kind, "edge": edge, "sidewalk": (sidewalk_inner, sidewalk_outer), "line": pos}
    bands.append((road_edge[-1], road_edge[1], ROAD))
    _ground(cv, bands, TERRAIN)

    # --- roadside planes: facades, tree lines, walls and fences (drawn before the objects)
    z_min, z_max = 0.25, 60.0
    for s, side in sides.items():
        line = side["line"]
        if side["kind"] == "urban":
            _facades(cv, rng, s * line, z_min, z_max)
        else:
            if rng.random() < 0.5:
                _facades(cv, rng, s * (line + rng.uniform(2.0, 8.0)), z_min, z_max)
            h0, amp = rng.uniform(2.0, 5.0), rng.uniform(0.2, 0.45)
            freq, phase = rng.uniform(0.3, 1.2), rng.uniform(0.0, 2 * np.pi)
            cv.side_plane(s * line, z_min, rng.uniform(15.0, z_max),
                          lambda z, h0=h0, a=amp, f=freq, p=phase: h0 * (1.0 - a * np.abs(np.sin(f * z + p))),
                          VEGETATION)
        if rng.random() < 0.3:                                        # a low wall in front of the line
            z0 = rng.uniform(0.5, 12.0)
            cv.side_plane(s * (line - 0.05), z0, z0 + rng.uniform(3.0, 15.0), rng.uniform(0.5, 1.4), WALL)
        if rng.random() < 0.3:                                        # a fence along the sidewalk
            z0 = rng.uniform(0.5, 10.0)
            u_f = side["sidewalk"][1] if rng.random() < 0.6 else side["sidewalk"][0]
            cv.side_plane(s * u_f, z0, z0 + rng.uniform(3.0, 15.0), rng.uniform(0.5, 1.0), FENCE)

    # --- objects, gathered with their distance and drawn far to near
    objects: list[tuple[float, Callable[[], None]]] = []

    def add(z: float, fn: Callable[..., None], *args) -> None:
        objects.append((z, lambda: fn(cv, *args)))

    for s, side in sides.items():
        inner, outer = side["sidewalk"]
        # street trees along the outer sidewalk edge
        if rng.random() < (0.6 if side["kind"] == "urban" else 0.8):
            z = rng.uniform(0.8, 3.0)
            while z < 35.0:
                u = s * (outer - rng.uniform(0.2, 0.5))
                add(z, _tree, u, z, rng.uniform(2.2, 3.6), rng.uniform(0.8, 1.5))
                z += rng.uniform(2.5, 8.0)
        # poles near the curb: lamp posts, traffic lights and signs
        for _ in range(rng.poisson(2.2)):
            topper = rng.choice(["light", "sign", "none"], p=[0.4, 0.4, 0.2])
            add_z = rng.uniform(1.3, 20.0)
            add(add_z, _pole, s * (inner + rng.uniform(0.15, 0.5)), add_z, rng.uniform(2.4, 3.8), topper,
                rng.random() < 0.5, rng.uniform(1.6, 2.4))
        # persons on the sidewalk
        for _ in range(rng.poisson(2.2)):
            z = 1.2 + 20.0 * rng.random() ** 1.5
            add(z, _person, s * rng.uniform(inner + 0.2, outer - 0.1), z, rng.uniform(1.05, 1.3), PERSON)
        # a row of cars parked along the curb
        if rng.random() < 0.45:
            z = rng.uniform(1.8, 8.0)
            for _ in range(1 + rng.poisson(1.5)):
                add(z, _car, s * (side["edge"] - rng.uniform(0.65, 0.85)), z, rng.random() < 0.7)
                z += rng.uniform(3.5, 7.0)
        # parked bicycles on the sidewalk
        if rng.random() < 0.15:
            z = rng.uniform(1.5, 12.0)
            add(z, _two_wheeler, s * rng.uniform(inner + 0.2, outer - 0.2), z, BICYCLE, False)

    left, right = road_edge[-1] + 0.7, road_edge[1] - 0.7
    # vehicles on the road
    for _ in range(rng.poisson(2.5)):
        z = 1.6 + 28.0 * rng.random() ** 1.7                         # denser near the camera
        add(z, _car, rng.uniform(left, right), z, rng.random() < 0.2)
    if rng.random() < 0.3:
        z = rng.uniform(2.0, 30.0)
        add(z, _truck, rng.uniform(left, right), z)
    if rng.random() < 0.2:
        z = rng.uniform(2.5, 35.0)
        add(z, _bus, rng.uniform(left, right), z, rng.random() < 0.4)
    if rng.random() < 0.05:                                           # a rare train (a tram along one side)
        z0 = rng.uniform(2.5, 9.0)
        s = -1 if rng.random() < 0.5 else 1
        u = s * (abs(road_edge[s]) + rng.uniform(-0.6, 0.8))
        add(z0, _train, u, z0, z0 + rng.uniform(12.0, 30.0), rng.uniform(2.2, 2.6))
    # two-wheelers with riders: motorcycles in traffic, cyclists near a road edge
    # (kept fairly near: far away they are a few pixels and mostly hidden behind the traffic)
    if rng.random() < 0.15:
        z = rng.uniform(1.8, 10.0)
        add(z, _two_wheeler, rng.uniform(left, right), z, MOTORCYCLE, rng.random() < 0.9)
    if rng.random() < 0.35:
        z = rng.uniform(1.8, 12.0)
        s = -1 if rng.random() < 0.5 else 1
        add(z, _two_wheeler, s * (abs(road_edge[s]) - rng.uniform(0.9, 1.4)), z, BICYCLE, True)

    for _, draw in sorted(objects, key=lambda item: -item[0]):
        draw()
    return cv.lab


def _facades(cv: _Canvas, rng: np.random.Generator, u: float, z_min: float, z_max: float) -> None:
    """Building facades on the plane at lateral u, from near to far, with occasional gaps."""
    z = z_min
    z_end = rng.uniform(10.0, z_max)
    while z < z_end:
        length = rng.uniform(4.0, 12.0)
        if rng.random() < 0.15:
            z += rng.uniform(1.5, 5.0)                                # a gap: sky and far ground show
            continue
        cv.side_plane(u, z, min(z + length, z_end), rng.uniform(3.0, 12.0), BUILDING)
        z += length


def _tree(cv: _Canvas, u: float, z: float, crown_h: float, crown_r: float) -> None:
    x = cv.x(u, z)
    trunk = max(1.0, cv.px(0.12, z))
    cv.rect(x - trunk / 2, cv.y(crown_h, z), x + trunk / 2, cv.y(0.0, z), VEGETATION)
    cv.ellipse(x, cv.y(crown_h, z), cv.px(crown_r, z), cv.px(0.8 * crown_r, z), VEGETATION)


def _pole(cv: _Canvas, u: float, z: float, h: float, topper: str, disc: bool, sign_h: float) -> None:
    x = cv.x(u, z)
    width = 1.0 if cv.px(0.1, z) < 1.2 else 2.0                     # 1-2 px wide
    x0 = round(x - width / 2)
    cv.rect(x0, cv.y(h, z), x0 + width, cv.y(0.0, z), POLE)
    if topper == "light":
        w, hh = max(2.0, cv.px(0.35, z)), max(3.0, cv.px(0.9, z))
        cv.rect(x - w / 2, cv.y(h, z) - hh * 0.3, x + w / 2, cv.y(h, z) + hh * 0.7, LIGHT)
    elif topper == "sign":
        r = max(1.5, cv.px(0.3, z))
        yc = cv.y(min(sign_h, h), z)
        if disc:
            cv.ellipse(x, yc, r, r, SIGN)
        else:
            cv.triangle(x, yc, r * 1.1, SIGN)


def _person(cv: _Canvas, u: float, z: float, h: float, cls: int, base: float = 0.0) -> None:
    """A person (or a rider when base > 0: the figure starts at height `base`)."""
    x = cv.x(u, z)
    half = max(0.5, cv.px(0.17, z))
    head = max(0.6, cv.px(0.11 * h, z))
    top = base + h
    cv.ellipse(x, cv.y(top - 0.11 * h, z), head, head, cls)                              # head
    cv.rect(x - half, cv.y(top - 0.2 * h, z), x + half, cv.y(base + 0.45 * h, z), cls)  # torso
    if base == 0.0:
        leg = max(0.5, cv.px(0.07, z))
        gap = cv.px(0.04, z)
        cv.rect(x - gap - leg, cv.y(0.47 * h, z), x - gap, cv.y(0.0, z), cls)
        cv.rect(x + gap, cv.y(0.47 * h, z), x + gap + leg, cv.y(0.0, z), cls)


def _car(cv: _Canvas, u: float, z: float, side_view: bool) -> None:
    x = cv.x(u, z)
    half = cv.px(1.4 if side_view else 0.62, z)
    cabin = cv.px(0.9 if side_view else 0.45, z)
    cv.rect(x - half, cv.y(0.8, z), x + half, cv.y(0.15, z), CAR)                 # body
    cv.rect(x - cabin, cv.y(1.05, z), x + cabin, cv.y(0.75, z), CAR)              # cabin
    wheel = cv.px(0.2, z)
    offset = half - 1.5 * wheel
    for dx in (-offset, offset):                                                 # wheels
        cv.ellipse(x + dx, cv.y(0.18, z), wheel, wheel, CAR)


def _truck(cv: _Canvas, u: float, z: float) -> None:
    x = cv.x(u, z)
    half = cv.px(0.85, z)
    cv.rect(x - half, cv.y(2.4, z), x + half, cv.y(0.3, z), TRUCK)                # cargo box
    cv.rect(x - 0.8 * half, cv.y(0.3, z), x + 0.8 * half, cv.y(0.0, z), TRUCK)    # chassis and wheels


def _bus(cv: _Canvas, u: float, z: float, side_view: bool) -> None:
    x = cv.x(u, z)
    half = cv.px(3.5 if side_view else 0.85, z)
    cv.rect(x - half, cv.y(2.2, z), x + half, cv.y(0.15, z), BUS)
    wheel = cv.px(0.25, z)
    for dx in (-0.7 * half, 0.7 * half):
        cv.ellipse(x + dx, cv.y(0.2, z), wheel, wheel, BUS)


def _train(cv: _Canvas, u: float, z_near: float, z_far: float, h: float) -> None:
    """A tram: its long side (the face toward the street centre) and its front at z_near."""
    half = 0.9
    inner = u - math.copysign(half, u)
    cv.side_plane(inner, z_near, z_far, h, TRAIN)
    x0, x1 = sorted((cv.x(u - half, z_near), cv.x(u + half, z_near)))
    cv.rect(x0, cv.y(h, z_near), x1, cv.y(0.1, z_near), TRAIN)


def _two_wheeler(cv: _Canvas, u: float, z: float, cls: int, ridden: bool) -> None:
    """A bicycle or motorcycle in side view (a wheel pair and a frame), with an optional rider."""
    x = cv.x(u, z)
    r = max(1.0, cv.px(0.24 if cls == MOTORCYCLE else 0.22, z))
    gap = cv.px(0.45, z) + 0.5
    ring = 0.55 if cls == BICYCLE and r >= 2.5 else 0.0
    for dx in (-gap, gap):
        cv.ellipse(x + dx, cv.y(0.0, z) - r, r, r, cls, inner=ring)
    frame_top = 0.55 if cls == MOTORCYCLE else 0.45
    thick = max(1.0, cv.px(0.08 if cls == BICYCLE else 0.25, z))
    y_frame = cv.y(frame_top, z)
    cv.rect(x - gap, y_frame, x + gap, y_frame + thick, cls)
    if cls == MOTORCYCLE:
        cv.rect(x - gap * 0.6, y_frame, x + gap * 0.6, cv.y(0.2, z), cls)
    if ridden:
        _person(cv, u, z, 1.0, RIDER, base=0.45)


# ----------------------------------------------------------------------------------------------
# Renderers
# ----------------------------------------------------------------------------------------------


def _flat(layout: np.ndarray, rng: np.random.Generator, table: np.ndarray) -> np.ndarray:
    """Flat per-class colours with the per-image x per-class jitter and the sky gradient (float HxWx3)."""
    if layout.ndim != 2:
        raise ValueError(f"layout must be an HxW trainId map, got shape {layout.shape}")
    jitter = 1.0 + rng.uniform(-SOURCE_JITTER, SOURCE_JITTER, size=(NUM_CLASSES, 3))
    colours = np.clip(table * jitter, 0.0, 1.0)
    image = colours[np.minimum(layout, NUM_CLASSES - 1)]
    sky = layout == SKY
    rows = np.flatnonzero(sky.any(axis=1))
    if rows.size:
        t = np.arange(layout.shape[0], dtype=np.float64) / max(1, rows[-1])          # 0 top, 1 at horizon
        t = np.clip(t, 0.0, 1.0)[:, None, None] * 0.7
        gradient = (1.0 - t) * colours[SKY] + t * SKY_HORIZON_COLOUR
        image = np.where(sky[:, :, None], gradient, image)
    return image + rng.normal(0.0, SOURCE_NOISE, size=image.shape)


def _quantise(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_source(layout: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Source ("GTA-like") style: flat class colours, ~3 % jitter, sky gradient, hard edges (uint8 HxWx3)."""
    return _quantise(_flat(layout, rng, SOURCE_COLOURS))


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: tuple[float, ...]) -> np.ndarray:
    """Multi-octave bilinear value noise, zero mean, scaled to [-1, 1]."""
    total = np.zeros((height, width))
    amplitude = 1.0
    for cell in cells:
        gh, gw = int(height / cell) + 2, int(width / cell) + 2
        grid = rng.random((gh, gw))
        ys = (np.arange(height) + 0.5) / cell + rng.random()
        xs = (np.arange(width) + 0.5) / cell + rng.random()
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        fy, fx = ys - y0, xs - x0
        fy, fx = (fy * fy * (3 - 2 * fy))[:, None], (fx * fx * (3 - 2 * fx))[None, :]   # smoothstep
        y0, x0 = np.minimum(y0, gh - 2), np.minimum(x0, gw - 2)
        top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
        bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
        total += amplitude * (top * (1 - fy) + bottom * fy)
        amplitude *= 0.5
    total -= total.mean()
    peak = np.abs(total).max()
    return total / peak if peak > 0 else total


def _textures(layout: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A per-pixel luminance texture in [-1, 1] chosen by class (see the module docstring)."""
    height, width = layout.shape
    s = height / 64.0
    yy = np.arange(height, dtype=np.float64)[:, None]
    xx = np.arange(width, dtype=np.float64)[None, :]
    # linear gradients with a random direction per class (the default texture)
    theta = rng.uniform(0.0, 2 * np.pi, size=NUM_CLASSES)
    half_diag = 0.5 * math.hypot(height, width)
    gx, gy = (xx - width / 2) / half_diag, (yy - height / 2) / half_diag
    tex = np.cos(theta)[layout] * gx + np.sin(theta)[layout] * gy
    # value noise: fine grain on the road, blotches on vegetation, mixed on terrain
    octaves = {ROAD: (2.5 * s, 1.25 * s), VEGETATION: (5.0 * s, 2.0 * s),
               TERRAIN: (8.0 * s, 3.0 * s, 1.5 * s)}
    for cls, cells in octaves.items():
        noise = _value_noise(rng, height, width, cells)
        tex = np.where(layout == cls, noise, tex)
    # window grid on buildings: dark windows on a lighter wall
    px, py = rng.integers(4, 7) * s, rng.integers(4, 7) * s
    ox, oy = rng.uniform(0, px), rng.uniform(0, py)
    windows = (((xx + ox) % px) < 0.55 * px) & (((yy + oy) % py) < 0.5 * py)
    tex = np.where(layout == BUILDING, np.where(windows, -1.0, 0.5), tex)
    # cross-hatched stripes on fences
    period = rng.integers(3, 5) * max(1.0, s)
    hatch = (((xx + yy) % period) < period / 2) ^ (((xx - yy) % period) < period / 2)
    tex = np.where(layout == FENCE, np.where(hatch, 1.0, -1.0), tex)
    return tex


def _colour_matrix(angle_deg: float, saturation: float) -> np.ndarray:
    """Rotate hue about the grey axis by angle_deg, then scale saturation around the luma."""
    a = math.radians(angle_deg)
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3.0)
    rotation = math.cos(a) * np.eye(3) + (1.0 - math.cos(a)) / 3.0 * np.ones((3, 3)) + math.sin(a) * cross
    desaturate = saturation * np.eye(3) + (1.0 - saturation) * np.tile(_LUMA, (3, 1))
    return desaturate @ rotation


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an HxWxC float image (reflect padding), numpy only."""
    radius = max(1, math.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    height, width = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    image = sum(w * padded[i:i + height] for i, w in enumerate(taps))
    padded = np.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(w * padded[:, i:i + width] for i, w in enumerate(taps))


def render_target(layout: np.ndarray, rng: np.random.Generator, shift: float) -> np.ndarray:
    """Target ("Cityscapes-like") style, every effect scaled by `shift` in [0, 1] (uint8 HxWx3).

    shift=0 returns exactly `render_source(layout, rng)` for the same generator state.
    """
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift={shift} is outside [0, 1]; use 0 (no domain shift) to 1 (full shift)")
    image = _flat(layout, rng, _pulled_table(shift))
    # Draw every random quantity whatever the shift, so one image varies smoothly with it.
    tex = _textures(layout, rng)
    contrast = rng.uniform(*CONTRAST_RANGE)
    brightness = rng.uniform(-BRIGHTNESS_RANGE, BRIGHTNESS_RANGE)
    noise = rng.normal(0.0, 1.0, size=image.shape)
    if shift == 0.0:
        return _quantise(image)
    image = image + (TEXTURE_PER_SHIFT * shift) * tex[:, :, None]
    angle = (HUE_BASE_DEG + HUE_PER_SHIFT_DEG * shift) * min(1.0, shift / HUE_RAMP)
    image = np.clip(image, 0.0, 1.0) @ _colour_matrix(angle, 1.0 - DESAT_PER_SHIFT * shift).T
    mean = image.mean()
    image = (image - mean) * (1.0 - shift * (1.0 - contrast)) + mean + shift * brightness
    image = _gaussian_blur(image, BLUR_PER_SHIFT * shift)
    image = image + (NOISE_PER_SHIFT * shift) * noise
    return _quantise(image)


# ----------------------------------------------------------------------------------------------
# Samples and the on-disk dataset
# ----------------------------------------------------------------------------------------------


def sample_rng(spec: ToyCitySpec, domain: str, split: str, index: int) -> np.random.Generator:
    """The generator of one sample: seeded by (seed, domain, split, index), order-free, no hash()."""
    if domain not in DOMAIN_IDS:
        raise ValueError(f"domain {domain!r} is not one of {sorted(DOMAIN_IDS)}")
    if split not in SPLIT_IDS:
        raise ValueError(f"split {split!r} is not one of {sorted(SPLIT_IDS)}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    return np.random.default_rng([int(spec.seed), DOMAIN_IDS[domain], SPLIT_IDS[split], int(index)])


def generate_sample(spec: ToyCitySpec, domain: str, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, label uint8 HxW) pair; the layout is drawn before the style."""
    rng = sample_rng(spec, domain, split, index)
    label = sample_layout(rng, spec.height, spec.width)
    if domain == "source":
        image = render_source(label, rng)
    else:
        image = render_target(label, rng, float(spec.shift))
    return image, label


def _file_names(domain: str, split: str, index: int) -> tuple[str, str]:
    if domain == "source":
        stem = f"toy_src_{index:06d}"
        return f"images/{split}/{stem}.png", f"labels/{split}/{stem}_labelTrainIds.png"
    stem = f"toy_tgt_{split}_{index:06d}"
    return (f"leftImg8bit/{split}/toycity/{stem}_leftImg8bit.png",
            f"gtFine/{split}/toycity/{stem}_gtFine_labelTrainIds.png")


class _Progress:
    """tqdm on a terminal, else one plain line per 100 images on stderr; silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.bar = total, 0, None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc="toycity", unit="img", file=sys.stderr)

    def step(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and (self.done % 100 == 0 or self.done == self.total):
            print(f"toycity: {self.done}/{self.total} images", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_toycity(spec: ToyCitySpec, root: str | Path, progress: bool = True) -> dict:
    """Generate the dataset into `root` atomically and return its manifest (also written as manifest.json).

    Everything is built in a sibling `<root>.tmp-<pid>` folder, manifest.json last; then an existing
    `root` is moved aside, the temp folder renamed into place, and the old copy deleted. On any error
    the temp folder is removed and `root` is left as it was.
    """
    spec.validate()
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    plan = [("source", "train", spec.n_source), ("target", "train", spec.n_target_train),
            ("target", "val", spec.n_target_val)]
    bar = _Progress(sum(n for _, _, n in plan), progress)
    try:
        pixels = {"source": np.zeros(NUM_CLASSES, np.int64), "target": np.zeros(NUM_CLASSES, np.int64)}
        for domain, split, count in plan:
            lines = []
            for index in range(count):
                image, label = generate_sample(spec, domain, split, index)
                image_rel, label_rel = _file_names(domain, split, index)
                for rel, array in ((image_rel, image), (label_rel, label)):
                    path = tmp / domain / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(array).save(path, format="PNG")
                pixels[domain] += np.bincount(label.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
                lines.append(f"{image_rel} {label_rel}\n")
                bar.step()
            list_path = tmp / domain / "lists" / f"{split}.txt"
            list_path.parent.mkdir(parents=True, exist_ok=True)
            list_path.write_text("".join(lines))
        manifest = {
            "dataset": "toycity",
            "version": MANIFEST_VERSION,
            "spec": asdict(spec),
            "num_classes": NUM_CLASSES,
            "domains": {
                "source": {"root": "source", "lists": {"train": "lists/train.txt"},
                           "count": {"train": spec.n_source}},
                "target": {"root": "target", "lists": {"train": "lists/train.txt", "val": "lists/val.txt"},
                           "count": {"train": spec.n_target_train, "val": spec.n_target_val}},
            },
            "class_pixel_share": {
                domain: {name: round(float(n) / float(counts.sum()), 6)
                         for name, n in zip(CLASS_NAMES, counts, strict=True)}
                for domain, counts in pixels.items()
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        old = root.with_name(f"{root.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        if root.exists():
            os.replace(root, old)                                     # move the previous copy aside
        try:
            os.replace(tmp, root)
        except BaseException:
            if old.exists() and not root.exists():
                os.replace(old, root)                                 # put the previous copy back
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return manifest
