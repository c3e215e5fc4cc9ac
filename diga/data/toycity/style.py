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
appearance effects, every one scaled by the single knob `shift` in [0, 1]. The constants were
calibrated in an early stand-alone run of this generator, with the class pull
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
"""

from __future__ import annotations

import math

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
