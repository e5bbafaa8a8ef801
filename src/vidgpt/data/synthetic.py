"""The synthetic world's public API (see `vidgpt.data.world` for the pieces).

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, WorldConfig(), split="train")
    frames = render_scene(scene, frames=17, height=128, width=128, fps=8)   # uint8 [T,H,W,3]
    texts = captions(scene, rng)                                            # terse ... detailed
    src, tgt, instruction, kind = make_edit_pair(rng, scene)
    clip = random_training_clip(rng, 17, 128, 128)                          # tokenizer training
"""

from .world.captions import MOTION_WORDS, STYLES, caption, captions
from .world.edit_pairs import EDIT_KINDS, make_edit_pair
from .world.palette import BACKGROUND_COLORS, OBJECT_COLORS
from .world.render import code_object_mask, render_object_cover, render_scene
from .world.scene import (
    BACKGROUNDS,
    CAMERA_MOVES,
    DIRECTIONS,
    MOTIONS,
    SIZES,
    Background,
    Camera,
    ObjectSpec,
    Scene,
    SceneError,
    WorldConfig,
    clip_world,
    duration_overridden,
    is_heldout,
    load_world_config,
    sample_scene,
)
from .world.shapes import SHAPES
from .world.training import random_training_clip

__all__ = [
    "BACKGROUNDS", "BACKGROUND_COLORS", "CAMERA_MOVES", "DIRECTIONS", "EDIT_KINDS", "MOTIONS", "MOTION_WORDS",
    "OBJECT_COLORS", "SHAPES", "SIZES", "STYLES", "Background", "Camera", "ObjectSpec", "Scene", "SceneError",
    "WorldConfig", "caption", "captions", "clip_world", "duration_overridden", "is_heldout", "load_world_config",
    "make_edit_pair", "random_training_clip",
    "code_object_mask", "render_object_cover", "render_scene", "sample_scene",
]
