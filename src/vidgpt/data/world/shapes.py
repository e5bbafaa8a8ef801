"""Shape geometry shared by the renderer and the judge.

Every shape lives in local coordinates (u right, v down) scaled so that it fits the unit circle
and its centroid sits at the origin. `inside(shape, u, v)` says which points are covered.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "ring")

# Rotating these shapes changes nothing a camera can see.
ROUND_SHAPES = frozenset({"circle", "ring"})

# Smallest rotation (degrees) that maps the shape onto itself (0 = any rotation).
SYMMETRY_DEG = {
    "circle": 0.0,
    "ring": 0.0,
    "square": 90.0,
    "cross": 90.0,
    "triangle": 120.0,
    "star": 72.0,
    "hexagon": 60.0,
    "diamond": 180.0,
}

_RING_INNER = 0.55
_SQUARE_HALF = 0.72
_DIAMOND_HALF_WIDTH = 0.6
_STAR_INNER = 0.42
_CROSS_HALF_LENGTH = 0.88
_CROSS_HALF_WIDTH = 0.3


def _convex(u: np.ndarray, v: np.ndarray, normal_deg: np.ndarray, offset: float) -> np.ndarray:
    """Points inside a regular convex polygon given its edge normals (degrees) and apothem."""
    inside = np.ones(np.broadcast(u, v).shape, dtype=bool)
    for a in np.deg2rad(normal_deg):
        inside &= u * np.cos(a) + v * np.sin(a) <= offset
    return inside


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five-pointed star, one point straight up, outer radius 1, inner radius _STAR_INNER."""
    r = np.hypot(u, v)
    theta = np.degrees(np.arctan2(v, u)) + 90.0  # 0 = pointing up
    phi = np.mod(theta, 72.0)
    psi = np.radians(np.minimum(phi, 72.0 - phi))  # angle from the nearest point, in [0, 36] deg
    x, y = r * np.cos(psi), r * np.sin(psi)
    # The edge from the point (1, 0) to the inner vertex (ri cos36, ri sin36); inside = origin side.
    ix, iy = _STAR_INNER * np.cos(np.radians(36.0)), _STAR_INNER * np.sin(np.radians(36.0))
    cross = (ix - 1.0) * y - iy * (x - 1.0)
    return cross >= 0.0


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean array: which local points (u, v) (unit radius, v pointing down) the shape covers."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= _RING_INNER**2)
    if shape == "square":
        return (np.abs(u) <= _SQUARE_HALF) & (np.abs(v) <= _SQUARE_HALF)
    if shape == "diamond":
        return np.abs(u) / _DIAMOND_HALF_WIDTH + np.abs(v) <= 1.0
    if shape == "triangle":  # equilateral, pointing up, vertices on the unit circle
        return _convex(u, v, np.array([90.0, 210.0, 330.0]), 0.5)
    if shape == "hexagon":  # flat top and bottom
        return _convex(u, v, np.arange(30.0, 360.0, 60.0), np.cos(np.radians(30.0)))
    if shape == "star":
        return _star(u, v)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= _CROSS_HALF_WIDTH) & (av <= _CROSS_HALF_LENGTH)) | (
            (av <= _CROSS_HALF_WIDTH) & (au <= _CROSS_HALF_LENGTH)
        )
    raise KeyError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")


def rotate_to_local(dx: np.ndarray, dy: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Screen offsets -> local shape coordinates for a shape turned clockwise by angle_deg."""
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return c * dx + s * dy, -s * dx + c * dy


@lru_cache(maxsize=None)
def unit_area(shape: str) -> float:
    """Area of the shape at unit radius (for turning a pixel area back into a radius)."""
    g = (np.arange(800) + 0.5) / 400.0 - 1.0
    u, v = np.meshgrid(g, g)
    return float(inside(shape, u, v).mean() * 4.0)
