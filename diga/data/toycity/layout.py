"""The street-scene layout shared by both domains (`sample_layout`): a trainId map drawn through the
camera of `diga.data.toycity.canvas` with the painter's algorithm, back to front:

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
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


def sample_layout(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Draw one street-scene trainId map (uint8, HxW, values 0..18); see the module docstring."""
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


def _pole(cv: Canvas, u: float, z: float, h: float, topper: str, disc: bool, sign_h: float) -> None:
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


def _person(cv: Canvas, u: float, z: float, h: float, cls: int, base: float = 0.0) -> None:
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


def _two_wheeler(cv: Canvas, u: float, z: float, cls: int, ridden: bool) -> None:
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
