"""The street-scene layout shared by both domains (`sample_layout`): a trainId map drawn through the
camera of `diga.data.toycity.canvas` with the painter's algorithm, back to front:

* sky (10) everywhere, then a distant skyline of building rectangles and tree crowns at the horizon;
* the ground: a road (0) trapezoid to the vanishing point, flanked on each side by optional terrain
  (9) verges and sidewalks (1); beyond the street line, terrain;
* each side is "urban" (building (2) facades on a vertical plane, with gaps showing the sky) or
  "park" (a vegetation (8) tree line, sometimes with buildings set further back);
* walls (3) as low boxes in front of the facades, fences (4) as bands along the sidewalk;
* objects sorted far to near: street trees (vegetation ellipses on trunks), poles (5) (widths per version, below)
  topped by a traffic light (6, vertical box) or a sign (7, disc or triangle), cars (13), trucks
  (14), buses (15), a rare train (16, p=0.05), motorcycles (17) and bicycles (18) as wheel pairs,
  persons (11) on the sidewalks and riders (12) on the bicycles and motorcycles.

The pixel shares follow Cityscapes' long tail: road, building, vegetation and sky are the largest
classes; rider, motorcycle, light and train are rare (see the manifest's class_pixel_share).

Two versions of the sizes and frequencies (`LAYOUTS`, chosen by `toycity.version`): 1, the original,
whose thin objects are 1-2 px wide (below what a network at output stride 8 resolves on 64x128), and
2, whose thin objects have floors of 3-4 px (poles), 4x6 px (lights), a 3 px radius (signs), a 2 px
wide torso (persons) and 2 px frames (two-wheelers, with solid wheels below a 4 px radius), about one
logit cell of a network at output stride 4 (as a Cityscapes pole spans one or more cells of DeepLabV2 at
output stride 8), and whose rare classes (wall, fence, truck, bus, train, two-wheelers) are drawn more
often and nearer, so that every class has enough pixels to be learned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diga.data.toycity.canvas import Canvas, draw_ground
from diga.data.toycity.classes import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    LIGHT,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SIGN,
    TERRAIN,
    TRAIN,
    TRUCK,
    VEGETATION,
    WALL,
)


@dataclass(frozen=True)
class LayoutParams:
    """The sizes and frequencies that differ between layout versions (see the module docstring)."""

    pole_px: tuple[float, float]          # pole width (px) when far / near (near: 0.1 ch is >= pole_near_at px)
    pole_near_at: float
    light_min_px: tuple[float, float]     # traffic-light box: minimum width, height (px)
    sign_min_px: float                    # sign: minimum radius (px)
    person_min_half_px: float             # person torso: minimum half-width (px)
    wall_p: float                         # per side: a low wall, a fence
    fence_p: float
    person_depth: float                   # persons at z = 1.2 + person_depth * U^1.5
    truck_p: float
    bus_p: float
    train_p: float
    motorcycles: tuple[str, float, float]  # (count law 'bernoulli' p or 'poisson' mean, its value, farthest z)
    bicycles: tuple[str, float, float]
    two_wheeler_near: float               # nearest z of a moving two-wheeler
    frame_min_px: float                   # two-wheeler frame: minimum thickness (px)
    ring_min_px: float                    # bicycle wheels are rings (hollow) from this radius (px) up


LAYOUTS = {
    1: LayoutParams(pole_px=(1.0, 2.0), pole_near_at=1.2, light_min_px=(2.0, 3.0), sign_min_px=1.5,
                    person_min_half_px=0.5, wall_p=0.3, fence_p=0.3, person_depth=20.0, truck_p=0.3, bus_p=0.2,
                    train_p=0.05, motorcycles=("bernoulli", 0.15, 10.0), bicycles=("bernoulli", 0.35, 12.0),
                    two_wheeler_near=1.8, frame_min_px=1.0, ring_min_px=2.5),
    2: LayoutParams(pole_px=(3.0, 4.0), pole_near_at=2.5, light_min_px=(4.0, 6.0), sign_min_px=3.0,
                    person_min_half_px=1.0, wall_p=0.5, fence_p=0.5, person_depth=14.0, truck_p=0.5, bus_p=0.35,
                    train_p=0.2, motorcycles=("poisson", 0.6, 6.0), bicycles=("poisson", 0.8, 6.0),
                    two_wheeler_near=1.5, frame_min_px=2.0, ring_min_px=4.0),
}


def _count(rng: np.random.Generator, law: str, value: float) -> int:
    return int(rng.random() < value) if law == "bernoulli" else int(rng.poisson(value))


def sample_layout(rng: np.random.Generator, height: int, width: int, version: int = 1) -> np.ndarray:
    """Draw one street-scene trainId map (uint8, HxW, values 0..18); see the module docstring."""
    p = LAYOUTS[version]
    y_h = rng.uniform(0.38, 0.50) * height
    x_v = rng.uniform(0.35, 0.65) * width
    cv = Canvas(height, width, y_h, x_v)
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
    draw_ground(cv, bands, TERRAIN)

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
        if rng.random() < p.wall_p:                                   # a low wall in front of the line
            z0 = rng.uniform(0.5, 12.0)
            cv.side_plane(s * (line - 0.05), z0, z0 + rng.uniform(3.0, 15.0), rng.uniform(0.5, 1.4), WALL)
        if rng.random() < p.fence_p:                                  # a fence along the sidewalk
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
                rng.random() < 0.5, rng.uniform(1.6, 2.4), p)
        # persons on the sidewalk
        for _ in range(rng.poisson(2.2)):
            z = 1.2 + p.person_depth * rng.random() ** 1.5
            add(z, _person, s * rng.uniform(inner + 0.2, outer - 0.1), z, rng.uniform(1.05, 1.3), PERSON,
                p.person_min_half_px)
        # a row of cars parked along the curb
        if rng.random() < 0.45:
            z = rng.uniform(1.8, 8.0)
            for _ in range(1 + rng.poisson(1.5)):
                add(z, _car, s * (side["edge"] - rng.uniform(0.65, 0.85)), z, rng.random() < 0.7)
                z += rng.uniform(3.5, 7.0)
        # parked bicycles on the sidewalk
        if rng.random() < 0.15:
            z = rng.uniform(1.5, 12.0)
            add(z, _two_wheeler, s * rng.uniform(inner + 0.2, outer - 0.2), z, BICYCLE, False, p)

    left, right = road_edge[-1] + 0.7, road_edge[1] - 0.7
    # vehicles on the road
    for _ in range(rng.poisson(2.5)):
        z = 1.6 + 28.0 * rng.random() ** 1.7                         # denser near the camera
        add(z, _car, rng.uniform(left, right), z, rng.random() < 0.2)
    if rng.random() < p.truck_p:
        z = rng.uniform(2.0, 30.0)
        add(z, _truck, rng.uniform(left, right), z)
    if rng.random() < p.bus_p:
        z = rng.uniform(2.5, 35.0)
        add(z, _bus, rng.uniform(left, right), z, rng.random() < 0.4)
    if rng.random() < p.train_p:                                      # a rare train (a tram along one side)
        z0 = rng.uniform(2.5, 9.0)
        s = -1 if rng.random() < 0.5 else 1
        u = s * (abs(road_edge[s]) + rng.uniform(-0.6, 0.8))
        add(z0, _train, u, z0, z0 + rng.uniform(12.0, 30.0), rng.uniform(2.2, 2.6))
    # two-wheelers with riders: motorcycles in traffic, cyclists near a road edge
    # (kept fairly near: far away they are a few pixels and mostly hidden behind the traffic)
    law, value, far = p.motorcycles
    for _ in range(_count(rng, law, value)):
        z = rng.uniform(p.two_wheeler_near, far)
        add(z, _two_wheeler, rng.uniform(left, right), z, MOTORCYCLE, rng.random() < 0.9, p)
    law, value, far = p.bicycles
    for _ in range(_count(rng, law, value)):
        z = rng.uniform(p.two_wheeler_near, far)
        s = -1 if rng.random() < 0.5 else 1
        add(z, _two_wheeler, s * (abs(road_edge[s]) - rng.uniform(0.9, 1.4)), z, BICYCLE, True, p)

    for _, draw in sorted(objects, key=lambda item: -item[0]):
        draw()
    return cv.lab


def _facades(cv: Canvas, rng: np.random.Generator, u: float, z_min: float, z_max: float) -> None:
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


def _tree(cv: Canvas, u: float, z: float, crown_h: float, crown_r: float) -> None:
    x = cv.x(u, z)
    trunk = max(1.0, cv.px(0.12, z))
    cv.rect(x - trunk / 2, cv.y(crown_h, z), x + trunk / 2, cv.y(0.0, z), VEGETATION)
    cv.ellipse(x, cv.y(crown_h, z), cv.px(crown_r, z), cv.px(0.8 * crown_r, z), VEGETATION)


def _pole(cv: Canvas, u: float, z: float, h: float, topper: str, disc: bool, sign_h: float,
          p: LayoutParams) -> None:
    x = cv.x(u, z)
    width = p.pole_px[0] if cv.px(0.1, z) < p.pole_near_at else p.pole_px[1]
    x0 = round(x - width / 2)
    cv.rect(x0, cv.y(h, z), x0 + width, cv.y(0.0, z), POLE)
    if topper == "light":
        w, hh = max(p.light_min_px[0], cv.px(0.35, z)), max(p.light_min_px[1], cv.px(0.9, z))
        cv.rect(x - w / 2, cv.y(h, z) - hh * 0.3, x + w / 2, cv.y(h, z) + hh * 0.7, LIGHT)
    elif topper == "sign":
        r = max(p.sign_min_px, cv.px(0.3, z))
        yc = cv.y(min(sign_h, h), z)
        if disc:
            cv.ellipse(x, yc, r, r, SIGN)
        else:
            cv.triangle(x, yc, r * 1.1, SIGN)


def _person(cv: Canvas, u: float, z: float, h: float, cls: int, min_half: float, base: float = 0.0) -> None:
    """A person (or a rider when base > 0: the figure starts at height `base`); torso half-width >= min_half px."""
    x = cv.x(u, z)
    half = max(min_half, cv.px(0.17, z))
    head = max(0.6, cv.px(0.11 * h, z))
    top = base + h
    cv.ellipse(x, cv.y(top - 0.11 * h, z), head, head, cls)                              # head
    cv.rect(x - half, cv.y(top - 0.2 * h, z), x + half, cv.y(base + 0.45 * h, z), cls)  # torso
    if base == 0.0:
        leg = max(0.5, cv.px(0.07, z))
        gap = cv.px(0.04, z)
        cv.rect(x - gap - leg, cv.y(0.47 * h, z), x - gap, cv.y(0.0, z), cls)
        cv.rect(x + gap, cv.y(0.47 * h, z), x + gap + leg, cv.y(0.0, z), cls)


def _car(cv: Canvas, u: float, z: float, side_view: bool) -> None:
    x = cv.x(u, z)
    half = cv.px(1.4 if side_view else 0.62, z)
    cabin = cv.px(0.9 if side_view else 0.45, z)
    cv.rect(x - half, cv.y(0.8, z), x + half, cv.y(0.15, z), CAR)                 # body
    cv.rect(x - cabin, cv.y(1.05, z), x + cabin, cv.y(0.75, z), CAR)              # cabin
    wheel = cv.px(0.2, z)
    offset = half - 1.5 * wheel
    for dx in (-offset, offset):                                                 # wheels
        cv.ellipse(x + dx, cv.y(0.18, z), wheel, wheel, CAR)


def _truck(cv: Canvas, u: float, z: float) -> None:
    x = cv.x(u, z)
    half = cv.px(0.85, z)
    cv.rect(x - half, cv.y(2.4, z), x + half, cv.y(0.3, z), TRUCK)                # cargo box
    cv.rect(x - 0.8 * half, cv.y(0.3, z), x + 0.8 * half, cv.y(0.0, z), TRUCK)    # chassis and wheels


def _bus(cv: Canvas, u: float, z: float, side_view: bool) -> None:
    x = cv.x(u, z)
    half = cv.px(3.5 if side_view else 0.85, z)
    cv.rect(x - half, cv.y(2.2, z), x + half, cv.y(0.15, z), BUS)
    wheel = cv.px(0.25, z)
    for dx in (-0.7 * half, 0.7 * half):
        cv.ellipse(x + dx, cv.y(0.2, z), wheel, wheel, BUS)


def _train(cv: Canvas, u: float, z_near: float, z_far: float, h: float) -> None:
    """A tram: its long side (the face toward the street centre) and its front at z_near."""
    half = 0.9
    inner = u - math.copysign(half, u)
    cv.side_plane(inner, z_near, z_far, h, TRAIN)
    x0, x1 = sorted((cv.x(u - half, z_near), cv.x(u + half, z_near)))
    cv.rect(x0, cv.y(h, z_near), x1, cv.y(0.1, z_near), TRAIN)


def _two_wheeler(cv: Canvas, u: float, z: float, cls: int, ridden: bool, p: LayoutParams) -> None:
    """A bicycle or motorcycle in side view (a wheel pair and a frame), with an optional rider."""
    x = cv.x(u, z)
    r = max(1.0, cv.px(0.24 if cls == MOTORCYCLE else 0.22, z))
    gap = cv.px(0.45, z) + 0.5
    ring = 0.55 if cls == BICYCLE and r >= p.ring_min_px else 0.0
    for dx in (-gap, gap):
        cv.ellipse(x + dx, cv.y(0.0, z) - r, r, r, cls, inner=ring)
    frame_top = 0.55 if cls == MOTORCYCLE else 0.45
    thick = max(p.frame_min_px, cv.px(0.08 if cls == BICYCLE else 0.25, z))
    y_frame = cv.y(frame_top, z)
    cv.rect(x - gap, y_frame, x + gap, y_frame + thick, cls)
    if cls == MOTORCYCLE:
        cv.rect(x - gap * 0.6, y_frame, x + gap * 0.6, cv.y(0.2, z), cls)
    if ridden:
        _person(cv, u, z, 1.0, RIDER, p.person_min_half_px, base=0.45)
