"""Scene descriptions of the synthetic world, their motion model, and seeded sampling.

A `Scene` is a few coloured shapes moving over a background, with an optional camera move over
the background. Positions are normalized per axis ([0, 1] of the width / height), sizes are
fractions of the shorter side, and every motion is defined per second, so one scene renders at
any size, aspect ratio, frame count and fps: fps changes the sampling, not the motion.

Held-out compositions: `WorldConfig.heldout` lists attribute combinations (e.g. colour x shape,
or colour x shape x motion). `sample_scene(..., split="train")` never produces an object that
matches one; `split="heldout"` draws every object from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ...config import from_dict, to_dict
from ...errors import ConfigError, DataError
from .palette import BACKGROUND_COLORS, OBJECT_COLORS
from .shapes import ROUND_SHAPES, SHAPES


class SceneError(DataError):
    """A scene description that is malformed or names unknown attributes."""


SIZES = {"small": 0.10, "medium": 0.135, "large": 0.17, "huge": 0.25}  # radius, fraction of the shorter side
# The sizes a world draws unless its config names others. "huge" (half the frame across) is opt-in: it exists for
# narrow scopes where an object must cover whole tokenizer cells (the CPU-trained default model, issue 11).
DEFAULT_SIZES = ("small", "medium", "large")
DIRECTIONS = {  # unit vectors in screen space (y points down)
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-0.7071, -0.7071),
    "up-right": (0.7071, -0.7071),
    "down-left": (-0.7071, 0.7071),
    "down-right": (0.7071, 0.7071),
}
MOTIONS = tuple(DIRECTIONS) + ("bounce", "rotate", "grow", "shrink", "stay")
BACKGROUNDS = ("solid", "gradient", "stripes", "checker", "dots", "noise", "photo")
CAMERA_MOVES = ("none", "pan-left", "pan-right", "pan-up", "pan-down", "zoom-in", "zoom-out")
BOUNCE_PERIOD = 0.8  # seconds per hop


@dataclass
class ObjectSpec:
    """One object. Motion parameters are always present; `motion` says which one applies.

    x, y: centre at t=0 (normalized per axis); speed: normalized units per second (linear moves);
    spin: degrees per second, positive = clockwise (rotate); rate: log-scale per second (grow /
    shrink); hop: bounce height (normalized); angle: orientation at t=0 in degrees.
    """

    shape: str
    color: str
    size: str = "medium"
    motion: str = "stay"
    x: float = 0.5
    y: float = 0.5
    angle: float = 0.0
    speed: float = 0.2
    spin: float = 90.0
    rate: float = 0.3
    hop: float = 0.18

    def state(self, t: float | np.ndarray) -> tuple:
        """(x, y, radius, angle) at time t seconds; radius is a fraction of the shorter side."""
        t = np.asarray(t, dtype=np.float64)
        x = np.full_like(t, self.x)
        y = np.full_like(t, self.y)
        r = np.full_like(t, SIZES[self.size])
        angle = np.full_like(t, self.angle)
        m = self.motion
        if m in DIRECTIONS:
            dx, dy = DIRECTIONS[m]
            x = x + dx * self.speed * t
            y = y + dy * self.speed * t
        elif m == "bounce":
            y = y - self.hop * np.abs(np.sin(np.pi * t / BOUNCE_PERIOD))
        elif m == "rotate":
            angle = angle + self.spin * t
        elif m == "grow":
            r = r * np.exp(self.rate * t)
        elif m == "shrink":
            r = r * np.exp(-self.rate * t)
        return x, y, r, angle


@dataclass
class Background:
    """kind: solid|gradient|stripes|checker|dots|noise|photo; colors: muted background colour
    names; seed: texture randomness; angle: stripe / gradient direction in degrees; scale: the
    texture period as a fraction of the shorter side; photo: key of the photo (kind=photo)."""

    kind: str = "solid"
    color: str = "dark blue"
    color2: str = "navy"
    angle: float = 0.0
    scale: float = 0.2
    seed: int = 0
    photo: str | None = None


@dataclass
class Camera:
    """A camera move over the background only (objects move in screen space).
    move: none|pan-left|pan-right|pan-up|pan-down|zoom-in|zoom-out; speed: normalized units (pan)
    or log-zoom (zoom) per second."""

    move: str = "none"
    speed: float = 0.1


@dataclass
class Scene:
    objects: list[ObjectSpec] = field(default_factory=list)
    background: Background = field(default_factory=Background)
    camera: Camera = field(default_factory=Camera)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        """Build and validate a Scene from a plain dict (as written by to_dict)."""
        try:
            scene = from_dict(cls, data, where="scene")
        except ConfigError as e:
            raise SceneError(str(e)) from e
        scene.validate()
        return scene

    def validate(self) -> None:
        for i, o in enumerate(self.objects):
            if not isinstance(o, ObjectSpec):
                raise SceneError(f"scene.objects[{i}]: expected a mapping")
            for key, value, known in (
                ("shape", o.shape, SHAPES),
                ("color", o.color, OBJECT_COLORS),
                ("size", o.size, SIZES),
                ("motion", o.motion, MOTIONS),
            ):
                if value not in known:
                    raise SceneError(f"scene.objects[{i}].{key}: unknown {value!r} (known: {', '.join(known)})")
        b = self.background
        if b.kind not in BACKGROUNDS:
            raise SceneError(f"scene.background.kind: unknown {b.kind!r} (known: {', '.join(BACKGROUNDS)})")
        for key in ("color", "color2"):
            if getattr(b, key) not in BACKGROUND_COLORS:
                raise SceneError(
                    f"scene.background.{key}: unknown {getattr(b, key)!r} (known: {', '.join(BACKGROUND_COLORS)})"
                )
        if self.camera.move not in CAMERA_MOVES:
            raise SceneError(f"scene.camera.move: unknown {self.camera.move!r} (known: {', '.join(CAMERA_MOVES)})")

    def copy(self) -> "Scene":
        return Scene.from_dict(self.to_dict())


@dataclass
class WorldConfig:
    """What the sampler may draw, and which combinations are held out of training.

    heldout: list of partial objects, e.g. {"color": "purple", "shape": "star"} or
    {"color": "cyan", "shape": "triangle", "motion": "left"}; an object matches one when every
    key given there is equal.
    """

    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    colors: list[str] = field(default_factory=lambda: list(OBJECT_COLORS))
    sizes: list[str] = field(default_factory=lambda: list(DEFAULT_SIZES))
    motions: list[str] = field(default_factory=lambda: list(MOTIONS))
    backgrounds: list[str] = field(default_factory=lambda: [b for b in BACKGROUNDS if b != "photo"])
    background_colors: list[str] = field(default_factory=lambda: list(BACKGROUND_COLORS))
    min_objects: int = 1
    max_objects: int = 3
    camera_prob: float = 0.25
    duration: float = 2.125  # seconds the layout keeps every object in frame and apart
    heldout: list[dict] = field(
        default_factory=lambda: [
            {"color": "purple", "shape": "star"},
            {"color": "orange", "shape": "ring"},
            {"color": "cyan", "shape": "triangle", "motion": "left"},
            {"color": "green", "shape": "hexagon", "motion": "bounce"},
            {"color": "white", "shape": "cross", "motion": "rotate"},
        ]
    )

    def __post_init__(self) -> None:
        for key, known in (
            ("shapes", SHAPES),
            ("colors", OBJECT_COLORS),
            ("sizes", SIZES),
            ("motions", MOTIONS),
            ("backgrounds", BACKGROUNDS),
            ("background_colors", BACKGROUND_COLORS),
        ):
            values = getattr(self, key)
            if not values:
                raise ConfigError(f"world config: {key} is empty")
            bad = [v for v in values if v not in known]
            if bad:
                raise ConfigError(f"world config: {key}: unknown {bad} (known: {', '.join(known)})")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError(f"world config: need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        attrs = {"color": OBJECT_COLORS, "shape": SHAPES, "motion": MOTIONS, "size": SIZES}
        for i, combo in enumerate(self.heldout):
            if not isinstance(combo, dict) or not combo:
                raise ConfigError(f"world config: heldout[{i}]: expected a mapping like {{color: purple, shape: star}}")
            for k, v in combo.items():
                if k not in attrs or v not in attrs[k]:
                    raise ConfigError(f"world config: heldout[{i}]: bad {k}={v!r}")
            if combo.get("motion") == "rotate" and combo.get("shape") in ROUND_SHAPES:
                raise ConfigError(f"world config: heldout[{i}]: a {combo['shape']} cannot visibly rotate")


def heldout_in_scope(config: WorldConfig) -> list[dict]:
    """The held-out combinations whose fixed attributes the config's own lists allow (a world of straight moves draws
    no held-out "green hexagon bouncing"): what split="heldout" draws from."""
    allowed = {"color": config.colors, "shape": config.shapes, "motion": config.motions, "size": config.sizes}
    return [c for c in config.heldout if all(v in allowed.get(k, (v,)) for k, v in c.items())]


def is_heldout(obj: ObjectSpec, config: WorldConfig) -> bool:
    """Does this object match one of the held-out combinations?"""
    return any(all(getattr(obj, k) == v for k, v in combo.items()) for combo in config.heldout)


# ---------------------------------------------------------------------------------------------
# placement


def trajectory_ok(obj: ObjectSpec, others: list[ObjectSpec], duration: float, margin: float = 0.01) -> bool:
    """True when obj stays inside the frame and clear of `others` for `duration` seconds."""
    t = np.linspace(0.0, duration, 9)
    x, y, r, _ = obj.state(t)
    if np.any(x - r < margin) or np.any(x + r > 1 - margin) or np.any(y - r < margin) or np.any(y + r > 1 - margin):
        return False
    for o in others:
        ox, oy, orad, _ = o.state(t)
        if np.any(np.hypot(x - ox, y - oy) < 1.15 * (r + orad) + 0.02):
            return False
    return True


def place(rng: np.random.Generator, obj: ObjectSpec, others: list[ObjectSpec], duration: float, tries: int = 60) -> bool:
    """Choose obj.x, obj.y so that its trajectory fits (in place); False if no spot was found."""
    for _ in range(tries):
        obj.x, obj.y = round(float(rng.uniform(0.08, 0.92)), 4), round(float(rng.uniform(0.08, 0.92)), 4)
        if trajectory_ok(obj, others, duration):
            return True
    return False


def feasible_motions(obj: ObjectSpec, others: list[ObjectSpec], duration: float, motions) -> list[str]:
    """The motions obj could take from where it is without leaving the frame or hitting others."""
    out = []
    for m in motions:
        if m == "rotate" and obj.shape in ROUND_SHAPES:
            continue
        trial = dataclasses.replace(obj, motion=m)
        if trajectory_ok(trial, others, duration):
            out.append(m)
    return out


# ---------------------------------------------------------------------------------------------
# sampling


def _random_object(rng: np.random.Generator, config: WorldConfig, duration: float, attrs: dict | None = None) -> ObjectSpec:
    attrs = dict(attrs or {})
    shape = attrs.get("shape") or str(rng.choice(config.shapes))
    motions = [m for m in config.motions if not (m == "rotate" and shape in ROUND_SHAPES)] or ["stay"]
    return ObjectSpec(
        shape=shape,
        color=attrs.get("color") or str(rng.choice(config.colors)),
        size=attrs.get("size") or str(rng.choice(config.sizes)),
        motion=attrs.get("motion") or str(rng.choice(motions)),
        angle=round(float(rng.uniform(0, 360)), 2) if rng.random() < 0.5 else 0.0,
        speed=round(float(rng.uniform(0.28, 0.42) / duration), 4),  # crosses 28-42% of the frame
        spin=round(float(rng.choice([-1, 1]) * rng.uniform(70, 110)), 2),
        rate=round(float(rng.uniform(0.22, 0.3)), 4),
        hop=round(float(rng.uniform(0.15, 0.22)), 4),
    )


def sample_background(rng: np.random.Generator, config: WorldConfig, photos=None) -> Background:
    kinds = [k for k in config.backgrounds if k != "photo" or photos]
    kind = str(rng.choice(kinds))
    c1, c2 = rng.choice(config.background_colors, size=2, replace=len(config.background_colors) < 2)
    photo = None
    if kind == "photo":
        keys = list(photos.keys()) if isinstance(photos, dict) else [str(i) for i in range(len(photos))]
        photo = str(rng.choice(keys))
    return Background(
        kind=kind,
        color=str(c1),
        color2=str(c2),
        angle=float(rng.choice([0.0, 45.0, 90.0, 135.0])),
        scale=round(float(rng.uniform(0.12, 0.3)), 4),
        seed=int(rng.integers(0, 2**31 - 1)),
        photo=photo,
    )


def sample_camera(rng: np.random.Generator, config: WorldConfig, background: Background) -> Camera:
    if background.kind == "solid" or rng.random() >= config.camera_prob:
        return Camera()
    move = str(rng.choice(CAMERA_MOVES[1:]))
    speed = round(float(rng.uniform(0.06, 0.12) if move.startswith("pan") else rng.uniform(0.1, 0.2)), 4)
    return Camera(move=move, speed=speed)


def sample_scene(
    rng: np.random.Generator, config: WorldConfig | None = None, split: str = "train", photos=None
) -> Scene:
    """A random scene of config.min_objects..max_objects objects with distinct colours.

    split="train": no object matches a held-out combination; split="heldout": every object
    matches one. Objects stay inside the frame and apart for config.duration seconds.
    """
    config = config or WorldConfig()
    if split not in ("train", "heldout"):
        raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}")
    if split == "heldout" and not config.heldout:
        raise ConfigError("world config: split 'heldout' needs at least one heldout combination")
    combos = heldout_in_scope(config) if split == "heldout" else []
    if split == "heldout" and not combos:
        raise ConfigError("world config: no heldout combination fits its colours, shapes and motions")
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    objects: list[ObjectSpec] = []
    for _ in range(200):
        if len(objects) == n:
            break
        used = {o.color for o in objects}
        if split == "heldout":
            combo = combos[int(rng.integers(len(combos)))]
            obj = _random_object(rng, config, config.duration, combo)
            if not is_heldout(obj, config):  # e.g. a random colour in place of a missing one
                continue
        else:
            obj = _random_object(rng, config, config.duration)
            if is_heldout(obj, config):
                continue
        if obj.color in used:
            continue
        if place(rng, obj, objects, config.duration):
            objects.append(obj)
    if not objects:
        raise ConfigError("world config: could not place a single object (sizes too large or motions impossible?)")
    background = sample_background(rng, config, photos)
    return Scene(objects=objects, background=background, camera=sample_camera(rng, config, background))


def clip_world(config: WorldConfig, frames: int, fps: float, duration: float | None = None) -> WorldConfig:
    """`config` with its objects laid out and moving over `duration` seconds (default: the clip's own length,
    frames / fps), so a linear move crosses 28-42% of the frame within the clip whatever its length (the built-in
    2.125 s is a 17-frame clip at 8 fps; a 9-frame clip would show only half the move)."""
    return dataclasses.replace(config, duration=duration if duration is not None else frames / fps)


def duration_overridden(overrides) -> bool:
    """True when KEY=VALUE overrides set the world's `duration` themselves."""
    return any(str(o).split("=", 1)[0].strip() == "duration" for o in overrides or [])


def load_world_config(path=None, overrides=None, frames: int | None = None, fps: float = 8.0) -> WorldConfig:
    """WorldConfig from a YAML file (configs/data/world.yaml) or the defaults. With `frames` (> 1): laid out over
    that clip's own length (`clip_world`) unless the overrides set `duration` themselves."""
    from ...config import load_config

    config = load_config(WorldConfig, path, overrides)
    if frames is not None and frames > 1 and not duration_overridden(overrides):
        config = clip_world(config, frames, fps)
    return config
