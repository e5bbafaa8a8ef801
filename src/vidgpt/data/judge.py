"""A rule-based judge: does a clip show what its scene description says?

`judge_clip(frames, scene)` checks every object of the scene for colour, shape and motion:

1. Segmentation. Each pixel goes to its nearest named object colour when it is within
   COLOR_RADIUS of it and not close to the frame's background colour (the median of the border
   pixels); speckle is removed (a pixel needs >= 3 of its 3x3 neighbourhood). Scenes use distinct
   colours per object, so colour k's mask is that object's mask.
2. Colour: the object's colour covers >= MIN_AREA pixels in >= 70% of the frames. Any other
   named colour that forms a blob in >= 50% of the frames is an unexplained extra object and
   fails the clip overall.
3. Shape: in up to 6 frames where the object is whole (not touching the border), every candidate
   shape is laid over the mask at the mask's centroid, with the mask's area, at the orientation
   (searched over the shape's symmetry period) that overlaps best; the shape with the best mean
   IoU is the observed shape. This is a nearest-prototype rule on simple geometry: fill, corners,
   concavity and holes (ring) all show up as IoU.
4. Motion: from the per-frame tracks of centroid (normalized per axis), log-area and
   orientation (of the observed shape), in order: bounce = vertical direction reversal(s) of
   >= 0.03 with range >= 0.06; a line = centroid speed >= 0.05 frame/s, named by its 8-way
   direction; grow / shrink = log-area slope beyond +-0.2/s; rotate = orientation slope beyond
   20 deg/s; else stay. Single frames (images) skip motion.

`judge_accuracy(n, rng, config)` measures the judge on freshly rendered clips and the rate at
which it accepts deliberately mismatched scenes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .world.palette import object_palette
from .world.scene import DIRECTIONS, Scene, SceneError
from .world.shapes import ROUND_SHAPES, SHAPES, SYMMETRY_DEG, inside, rotate_to_local, unit_area
from ..utils import progress_wanted

COLOR_RADIUS = 95.0  # max RGB distance from a named colour for a pixel to count as that colour
BACKGROUND_RADIUS = 45.0  # pixels this close to the border median are background
PRESENT_FRACTION = 0.7
EXTRA_FRACTION = 0.5
MIN_SPEED = 0.05  # frame widths (heights) per second
MIN_LOG_AREA_RATE = 0.2  # per second
MIN_SPIN = 20.0  # degrees per second
BOUNCE_REVERSAL = 0.03
BOUNCE_RANGE = 0.06


@dataclass
class AttributeCheck:
    expected: str
    observed: str | None
    passed: bool


@dataclass
class ObjectVerdict:
    index: int
    color: AttributeCheck
    shape: AttributeCheck
    motion: AttributeCheck
    frames_seen: int
    measures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.color.passed and self.shape.passed and self.motion.passed


@dataclass
class JudgeResult:
    objects: list[ObjectVerdict]
    extra_colors: list[str]
    passed: bool

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for o, v in zip(d["objects"], self.objects):
            o["passed"] = v.passed
        return d

    def summary(self) -> str:
        """Human-readable verdict, one line per object."""
        lines = []
        for v in self.objects:
            parts = []
            for name in ("color", "shape", "motion"):
                c = getattr(v, name)
                mark = "ok" if c.passed else "FAIL"
                seen = "" if c.passed else f" (saw {c.observed or 'nothing'})"
                parts.append(f"{name} {c.expected}: {mark}{seen}")
            lines.append(f"object {v.index}: " + ", ".join(parts))
        if self.extra_colors:
            lines.append("unexpected objects: " + ", ".join(self.extra_colors))
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# segmentation


def _neighbour_count(mask: np.ndarray) -> np.ndarray:
    """For bool [T, H, W]: how many of each pixel's 3x3 neighbourhood (itself included) are set."""
    m = np.pad(mask.astype(np.uint8), ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    return sum(m[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))


MIX_ALPHAS = (0.25, 0.45, 0.65)  # edge pixels: a named colour blended with the background


def segment(frames: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(colour names, label int8 [T, H, W]): index of the named colour per pixel, -1 = none.

    Anti-aliased or blurred edges blend an object colour with the background, and such a blend
    can lie nearer another named colour (pink over navy looks purple). So the candidates are the
    pure colours plus their blends with the frame's background; a pixel nearest a blend counts
    for that colour when the blend is at least half colour, else for nothing.
    """
    names, palette = object_palette()
    k = len(names)
    label = np.full(frames.shape[:3], -1, dtype=np.int8)
    for i, frame in enumerate(frames):
        x = frame.astype(np.float32)
        border = np.concatenate([x[:2].reshape(-1, 3), x[-2:].reshape(-1, 3), x[:, :2].reshape(-1, 3), x[:, -2:].reshape(-1, 3)])
        bg = np.median(border, axis=0)
        blends = [a * palette + (1 - a) * bg for a in MIX_ALPHAS]
        cands = np.concatenate([palette] + blends)  # [K * (1 + len(MIX_ALPHAS)), 3]
        d2 = (x * x).sum(-1, keepdims=True) - 2.0 * x @ cands.T + (cands * cands).sum(-1)
        nearest = d2.argmin(-1)
        dmin = np.take_along_axis(d2, nearest[..., None], -1)[..., 0]
        group, colour = nearest // k, nearest % k
        counts = (group == 0) | ((group > 0) & (np.asarray((1.0,) + MIX_ALPHAS)[group] >= 0.5))
        near_bg = ((x - bg) ** 2).sum(-1) < BACKGROUND_RADIUS**2
        ok = counts & (dmin < COLOR_RADIUS**2) & ~near_bg
        label[i] = np.where(ok, colour, -1)
    return names, label


def _clean(mask: np.ndarray) -> np.ndarray:
    return mask & (_neighbour_count(mask) >= 3)


# ---------------------------------------------------------------------------------------------
# shape fitting


def fit_shape(mask: np.ndarray, shape: str, step_deg: float = 6.0) -> tuple[float, float]:
    """(best IoU, angle in degrees) of `shape` laid over bool mask [H, W] at its centroid and area."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return 0.0, 0.0
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    r = np.sqrt(len(xs) / unit_area(shape))
    h, w = mask.shape
    x0 = max(int(min(xs.min(), cx - r)) - 2, 0)
    x1 = min(int(max(xs.max() + 1, cx + r)) + 3, w)
    y0 = max(int(min(ys.min(), cy - r)) - 2, 0)
    y1 = min(int(max(ys.max() + 1, cy + r)) + 3, h)
    win = mask[y0:y1, x0:x1]
    period = SYMMETRY_DEG[shape]
    angles = np.arange(0.0, period, step_deg) if period else np.zeros(1)
    dx = ((np.arange(x0, x1) + 0.5 - cx) / r)[None, None, :]
    dy = ((np.arange(y0, y1) + 0.5 - cy) / r)[None, :, None]
    a = np.radians(angles)[:, None, None]
    u, v = np.cos(a) * dx + np.sin(a) * dy, -np.sin(a) * dx + np.cos(a) * dy
    tmpl = inside(shape, u, v)  # [A, h, w]
    inter = (tmpl & win).sum(axis=(1, 2))
    union = (tmpl | win).sum(axis=(1, 2))
    iou = inter / np.maximum(union, 1)
    best = int(iou.argmax())
    return float(iou[best]), float(angles[best])


def classify_shape(masks: list[np.ndarray]) -> tuple[str | None, dict]:
    """(best shape, mean IoU per shape) over a few whole-object masks."""
    if not masks:
        return None, {}
    scores = {s: float(np.mean([fit_shape(m, s)[0] for m in masks])) for s in SHAPES}
    return max(scores, key=scores.get), scores


# ---------------------------------------------------------------------------------------------
# motion


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    tc = t - t.mean()
    return float((tc * (y - y.mean())).sum() / max((tc * tc).sum(), 1e-9))


def _reversals(y: np.ndarray, threshold: float) -> int:
    """Direction changes of a track that move back by more than `threshold` from an extreme."""
    count, direction, extreme = 0, 0, y[0]
    for value in y[1:]:
        if direction >= 0 and value > extreme:
            extreme = value
            direction = direction or (1 if value - y[0] > threshold else 0)
        elif direction <= 0 and value < extreme:
            extreme = value
            direction = direction or (-1 if y[0] - value > threshold else 0)
        if direction == 1 and extreme - value > threshold:
            count, direction, extreme = count + 1, -1, value
        elif direction == -1 and value - extreme > threshold:
            count, direction, extreme = count + 1, 1, value
    return count


def _unwrap(angles: np.ndarray, period: float) -> np.ndarray:
    d = np.diff(angles)
    d = (d + period / 2) % period - period / 2
    return np.concatenate([angles[:1], angles[0] + np.cumsum(d)])


def _direction_name(vx: float, vy: float) -> str:
    """8-way name of a screen-space velocity (y down)."""
    best, best_dot = "right", -2.0
    norm = np.hypot(vx, vy)
    for name, (dx, dy) in DIRECTIONS.items():
        dot = (vx * dx + vy * dy) / norm
        if dot > best_dot:
            best, best_dot = name, dot
    return best


def classify_motion(t: np.ndarray, x: np.ndarray, y: np.ndarray, log_area: np.ndarray, angle: np.ndarray | None) -> tuple[str, dict]:
    """(motion name, measures) from tracks over time t (seconds); x, y normalized per axis."""
    vx, vy = _slope(t, x), _slope(t, y)
    growth = _slope(t, log_area)
    spin = _slope(t, angle) if angle is not None else 0.0
    rev = _reversals(y, BOUNCE_REVERSAL)
    measures = {"vx": vx, "vy": vy, "log_area_rate": growth, "spin": spin, "y_reversals": rev,
                "y_range": float(y.max() - y.min())}
    if rev >= 1 and y.max() - y.min() >= BOUNCE_RANGE:
        return "bounce", measures
    if np.hypot(vx, vy) >= MIN_SPEED:
        return _direction_name(vx, vy), measures
    if growth >= MIN_LOG_AREA_RATE:
        return "grow", measures
    if growth <= -MIN_LOG_AREA_RATE:
        return "shrink", measures
    if abs(spin) >= MIN_SPIN:
        return "rotate", measures
    return "stay", measures


# ---------------------------------------------------------------------------------------------


def judge_clip(frames: np.ndarray, scene: Scene | dict, fps: float = 8.0) -> JudgeResult:
    """Judge uint8 frames [T, H, W, 3] (T=1: an image, motion not judged) against a scene."""
    if isinstance(scene, dict):
        scene = Scene.from_dict(scene)
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SceneError(f"judge: expected frames [T, H, W, 3], got shape {tuple(frames.shape)}")
    n_t, h, w = frames.shape[:3]
    names, label = segment(frames)
    min_area = max(4, int(0.002 * h * w))
    claimed = {o.color for o in scene.objects}

    extra = []
    for k, name in enumerate(names):
        if name not in claimed:
            area = _clean(label == k).sum(axis=(1, 2))
            if (area >= min_area).mean() >= EXTRA_FRACTION:
                extra.append(name)

    verdicts = [_judge_object(i, o, label == names.index(o.color), min_area, fps) for i, o in enumerate(scene.objects)]
    return JudgeResult(verdicts, extra, all(v.passed for v in verdicts) and not extra)


def _judge_object(index: int, obj, raw_mask: np.ndarray, min_area: int, fps: float) -> ObjectVerdict:
    mask = _clean(raw_mask)
    n_t, h, w = mask.shape
    area = mask.sum(axis=(1, 2))
    present = area >= min_area
    seen = int(present.sum())
    color_ok = seen >= max(1, PRESENT_FRACTION * n_t)
    color = AttributeCheck(obj.color, obj.color if color_ok else None, color_ok)
    if not color_ok:
        unseen_shape = AttributeCheck(obj.shape, None, False)
        return ObjectVerdict(index, color, unseen_shape, AttributeCheck(obj.motion, None, n_t == 1), seen)

    touches = mask[:, 0, :].any(1) | mask[:, -1, :].any(1) | mask[:, :, 0].any(1) | mask[:, :, -1].any(1)
    whole = np.nonzero(present & ~touches)[0]
    big = whole[area[whole] >= 0.5 * area[whole].max()] if len(whole) else whole
    pick = big[np.linspace(0, len(big) - 1, min(6, len(big))).round().astype(int)] if len(big) else big
    observed_shape, scores = classify_shape([mask[i] for i in pick])
    shape = AttributeCheck(obj.shape, observed_shape, observed_shape == obj.shape)
    measures: dict = {"shape_iou": scores}

    if n_t == 1:
        motion = AttributeCheck(obj.motion, None, True)
    elif len(whole) < 3:
        motion = AttributeCheck(obj.motion, None, False)
    else:
        t = whole / fps
        cx = np.array([np.nonzero(mask[i])[1].mean() + 0.5 for i in whole]) / w
        cy = np.array([np.nonzero(mask[i])[0].mean() + 0.5 for i in whole]) / h
        log_area = np.log(area[whole].astype(np.float64))
        angle = None
        if observed_shape not in ROUND_SHAPES:
            period = SYMMETRY_DEG[observed_shape]
            raw = np.array([fit_shape(mask[i], observed_shape, step_deg=3.0)[1] for i in whole])
            angle = _unwrap(raw, period)
        observed_motion, m = classify_motion(t, cx, cy, log_area, angle)
        measures.update(m)
        motion = AttributeCheck(obj.motion, observed_motion, observed_motion == obj.motion)
    return ObjectVerdict(index, color, shape, motion, seen, measures)


# ---------------------------------------------------------------------------------------------
# measuring the judge


def _mismatch(rng: np.random.Generator, scene: Scene, attribute: str, config) -> Scene | None:
    """A copy of scene with one object's colour, shape or motion changed to something else."""
    wrong = scene.copy()
    i = int(rng.integers(len(wrong.objects)))
    obj = wrong.objects[i]
    if attribute == "color":
        options = [c for c in config.colors if c not in {o.color for o in wrong.objects}]
    elif attribute == "shape":
        options = [s for s in config.shapes if s != obj.shape]
    else:
        options = [m for m in config.motions if m != obj.motion]
    if not options:
        return None
    setattr(obj, attribute, str(rng.choice(options)))
    return wrong


def judge_accuracy(
    n: int,
    rng: np.random.Generator,
    config=None,
    frames: int = 17,
    height: int = 128,
    width: int = 128,
    fps: float = 8.0,
    progress: bool = False,
) -> dict:
    """Render n fresh scenes and judge them against their own and against mismatched scenes.

    Returns {"accuracy": {"color", "shape", "motion", "object", "clip"}: fraction of correct
    verdicts on true scenes (per object for attributes, per clip for "clip"),
    "false_accept": {"color", "shape", "motion"}: fraction of clips passed although one object's
    attribute was changed in the scene, "n": n, "failures": a few failing verdicts}.
    """
    from .world.render import render_scene
    from .world.scene import WorldConfig, sample_scene

    config = config or WorldConfig()
    hits = {"color": [], "shape": [], "motion": [], "object": []}
    clip_ok, failures = [], []
    accepts = {"color": [], "shape": [], "motion": []}
    it = range(n)
    if progress_wanted(progress):
        from tqdm import tqdm

        it = tqdm(it, desc="judging", unit="clip")
    for _ in it:
        scene = sample_scene(rng, config)
        clip = render_scene(scene, frames, height, width, fps)
        result = judge_clip(clip, scene, fps)
        for v in result.objects:
            for a in ("color", "shape", "motion"):
                hits[a].append(getattr(v, a).passed)
            hits["object"].append(v.passed)
        clip_ok.append(result.passed)
        if not result.passed and len(failures) < 5:
            failures.append({"scene": scene.to_dict(), "verdict": result.summary()})
        for a in accepts:
            wrong = _mismatch(rng, scene, a, config)
            if wrong is not None:
                accepts[a].append(judge_clip(clip, wrong, fps).passed)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return {
        "n": n,
        "accuracy": {**{k: mean(v) for k, v in hits.items()}, "clip": mean(clip_ok)},
        "false_accept": {k: mean(v) for k, v in accepts.items()},
        "failures": failures,
    }
