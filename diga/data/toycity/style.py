"""The two domains' appearance: `render_source` and `render_target` turn a layout into an image.

Source style ("GTA-like", `render_source`)
------------------------------------------
One flat colour per class from `SOURCE_COLOURS` (our own table, deliberately not the Cityscapes
palette), a per-image x per-class colour jitter of about 3 % (a per-instance jitter would need
instance ids, which a trainId layout does not carry), a vertical sky gradient, hard edges and a
sub-quantisation pixel noise (sigma 0.002). Colour is a perfect cue: the shortcut source-only learns.

Target style ("Cityscapes-like", `render_target`)
------------------------------------------------
The source rendering of a colour table whose confusable classes are pulled toward a partner, then
appearance effects, every one scaled by the single knob `shift`. Two versions (`TARGET_STYLES`,
chosen by `toycity.version`):

Version 1 (shift in [0, 1]), calibrated in an early stand-alone run of this generator:
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

Version 2 (shift in [0, 2]; 1 is the default, 2 twice it): every effect linear in shift, so a
sweep moves one dial, and milder, so that a source-trained model partly survives the shift:
class pull 0.2*shift for the pairs that also share a shape family (terrain->vegetation,
wall->building, truck->car, bus->car, rider->person, motorcycle->bicycle), textures 0.15*shift,
hue rotation -30*shift degrees (the direction in which no large class lands on a rare class's
source colour; +45 put target cars on the source colour of train), desaturation x(1 - 0.3*shift),
contrast x[0.7, 1] and brightness +-0.08 (scaled by shift), blur sigma 0.6*shift, noise sigma
0.03*shift.

At shift=0 the target renderer returns exactly the source-style rendering (same colour table, no
texture, no effects), so 0 means "no domain shift".

Unseen domains for domain generalisation (`DG_STYLES`, `diga make-toy --style NAME`)
------------------------------------------------------------------------------------
Further target styles that no stage ever trains on, with the same class geometry and colours as
the source but other appearance factors (no class pull: only the look changes), each scaled by the
same `shift`:
- dusk: hue rotated the other way (+35*shift degrees), darker (brightness -0.12*shift on average),
  desaturated x(1 - 0.4*shift), contrast x[0.6, 0.85], sensor noise 0.035*shift, a little blur
  (0.3*shift), faint textures (0.1*shift);
- haze: washed out toward white (brightness +0.08*shift on average), contrast x[0.65, 0.85],
  desaturated x(1 - 0.4*shift), hue -10*shift degrees, blur 0.8*shift, noise 0.02*shift, textures
  0.05*shift.
A source-trained model that relies on exact colours fails on both; photometric augmentation
(colour jitter, grey, blur: what the DG stage distils over) covers part of each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from diga.data.labels import CLASS_NAMES, NUM_CLASSES, class_id
from diga.data.toycity.classes import BUILDING, FENCE, ROAD, SKY, TERRAIN, VEGETATION

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


@dataclass(frozen=True)
class TargetStyle:
    """The target renderer's constants (see the module docstring); every effect is scaled by shift."""

    max_shift: float
    partners: dict[str, str]                # confusable class -> the partner its colour is pulled toward
    pull: float                             # pull fraction per unit of shift
    texture: float                          # luminance texture amplitude per unit of shift
    hue_base_deg: float                     # hue rotation: (base + per_shift * shift), ramped in below hue_ramp
    hue_per_shift_deg: float
    hue_ramp: float
    desaturation: float                     # saturation x (1 - desaturation * shift)
    contrast_range: tuple[float, float]
    brightness: float
    blur: float                             # Gaussian blur sigma (px) per unit of shift
    noise: float                            # sensor noise sigma per unit of shift
    brightness_offset: float = 0.0          # mean brightness change per unit of shift (the DG styles)

    def hue_deg(self, shift: float) -> float:
        ramp = min(1.0, shift / self.hue_ramp) if self.hue_ramp > 0 else 1.0
        return (self.hue_base_deg + self.hue_per_shift_deg * shift) * ramp


TARGET_STYLES = {
    1: TargetStyle(max_shift=1.0, partners={
        "sidewalk": "road", "terrain": "vegetation", "wall": "building", "fence": "wall", "truck": "car",
        "bus": "car", "train": "bus", "rider": "person", "motorcycle": "bicycle", "traffic light": "traffic sign"},
        pull=0.4, texture=0.18, hue_base_deg=60.0, hue_per_shift_deg=60.0, hue_ramp=0.2, desaturation=0.5,
        contrast_range=(0.65, 1.0), brightness=0.1, blur=1.0, noise=0.04),
    2: TargetStyle(max_shift=2.0, partners={
        "terrain": "vegetation", "wall": "building", "truck": "car", "bus": "car", "rider": "person",
        "motorcycle": "bicycle"},
        pull=0.2, texture=0.15, hue_base_deg=0.0, hue_per_shift_deg=-30.0, hue_ramp=0.0, desaturation=0.3,
        contrast_range=(0.7, 1.0), brightness=0.08, blur=0.6, noise=0.03),
}
# Unseen styles for domain generalisation (module docstring); version-independent, shift in [0, 2].
DG_STYLES = {
    "dusk": TargetStyle(max_shift=2.0, partners={}, pull=0.0, texture=0.1, hue_base_deg=0.0, hue_per_shift_deg=35.0,
                        hue_ramp=0.0, desaturation=0.4, contrast_range=(0.6, 0.85), brightness=0.05, blur=0.3,
                        noise=0.035, brightness_offset=-0.12),
    "haze": TargetStyle(max_shift=2.0, partners={}, pull=0.0, texture=0.05, hue_base_deg=0.0, hue_per_shift_deg=-10.0,
                        hue_ramp=0.0, desaturation=0.4, contrast_range=(0.65, 0.85), brightness=0.05, blur=0.8,
                        noise=0.02, brightness_offset=0.08),
}
_LUMA = np.array([0.299, 0.587, 0.114])


def _pulled_table(style: TargetStyle, shift: float) -> np.ndarray:
    """Target base colours: each confusable class moved toward its partner's source colour."""
    table = SOURCE_COLOURS.copy()
    pull = style.pull * shift
    for name, partner in style.partners.items():
        c, p = class_id(name), class_id(partner)
        table[c] = (1.0 - pull) * SOURCE_COLOURS[c] + pull * SOURCE_COLOURS[p]
    return table


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


def render_target(layout: np.ndarray, rng: np.random.Generator, shift: float, version: int = 1,
                  style: TargetStyle | None = None) -> np.ndarray:
    """Target ("Cityscapes-like") style of `TARGET_STYLES[version]` (or `style`, e.g. one of `DG_STYLES`), scaled
    by `shift` (uint8 HxWx3).

    shift=0 returns exactly `render_source(layout, rng)` for the same generator state.
    """
    style = style or TARGET_STYLES[version]
    if not 0.0 <= shift <= style.max_shift:
        raise ValueError(f"shift={shift} is outside [0, {style.max_shift:g}] (ToyCity version {version}); use 0 "
                         f"(no domain shift) to {style.max_shift:g}")
    image = _flat(layout, rng, _pulled_table(style, shift))
    # Draw every random quantity whatever the shift, so one image varies smoothly with it.
    tex = _textures(layout, rng)
    contrast = rng.uniform(*style.contrast_range)
    brightness = rng.uniform(-style.brightness, style.brightness)
    noise = rng.normal(0.0, 1.0, size=image.shape)
    if shift == 0.0:
        return _quantise(image)
    image = image + (style.texture * shift) * tex[:, :, None]
    image = np.clip(image, 0.0, 1.0) @ _colour_matrix(style.hue_deg(shift), 1.0 - style.desaturation * shift).T
    mean = image.mean()
    image = (image - mean) * (1.0 - shift * (1.0 - contrast)) + mean + shift * (brightness + style.brightness_offset)
    image = _gaussian_blur(image, style.blur * shift)
    image = image + (style.noise * shift) * noise
    return _quantise(image)
