"""The camera geometry of a ToyCity scene and its depth-aware drawing primitives on a trainId map.

A pinhole camera one "camera height" (ch, ~1.5 m) above a flat ground plane. With the horizon at
row y_h ~ U(0.38, 0.50)*H, a vanishing point x_v and G = H - y_h, a ground point at lateral offset u
(ch) and distance z (ch) lands at column x_v + u*G/z and row y_h + G/z, and an object of height h ch
standing there spans h*G/z rows. Ground bands are therefore intervals of u = (x - x_v)/(y - y_h),
and every object is scaled by depth for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from diga.data.toycity.classes import SKY


class Canvas:
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


def draw_ground(canvas: Canvas, bands: list[tuple[float, float, int]], far: int) -> None:
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
