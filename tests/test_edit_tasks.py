"""Each edit task builds the right layout (source shape, instruction, target shape) and pastes back."""

import numpy as np
import pytest

from vidgpt.errors import GenerationError
from vidgpt.generate.editing import DEFAULT_INSTRUCTIONS, make_mask, plan_edit
from vidgpt.layout import VisualBlock


pytestmark = pytest.mark.usefixtures("one_thread")


def clip(T=6, H=34, W=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


# task: (source latent shape, target video size)
EXPECT = {
    "continue": ((2, 4, 4), (5, 32, 32)),
    "inpaint": ((2, 4, 4), (5, 32, 32)),
    "outpaint": ((2, 4, 4), (5, 64, 64)),
    "interpolate": ((2, 4, 4), (9, 32, 32)),
    "instruct": ((2, 4, 4), (5, 32, 32)),
}


@pytest.mark.parametrize("task", list(EXPECT))
def test_each_task_builds_its_layout(pipe, task):
    video = clip()  # 6 frames of 34x40 -> cut to 5 frames of 32x32
    instruction = "make it blue" if task == "instruct" else None
    out = pipe.edit(video, instruction, task=task, mask=(8, 8, 24, 16) if task == "inpaint" else None, seed=0, cfg=1.0)
    sample = pipe.layout.parse(out.prompt_ids)
    user = sample.turns[0].content
    assert isinstance(user[0], VisualBlock) and user[0].fine is not None and user[0].blueprint is None
    src_shape, (T, H, W) = EXPECT[task]
    assert user[0].shape == src_shape
    assert user[1] == (instruction or DEFAULT_INSTRUCTIONS[task])
    assert out.blocks[0].shape == (1 + (T - 1) // 4, H // 8, W // 8)
    plan = out.extra["plan"]
    raw = out.extra["raw_videos"][0]
    res = out.videos[0]
    if task == "continue":
        assert res.shape == (10, 32, 32, 3) and np.array_equal(res[:5], plan.original) and np.array_equal(res[5:], raw)
    elif task == "inpaint":
        m = plan.mask
        assert m[8:16, 8:24].all() and m.sum() == 8 * 16
        assert (plan.source[:, m] == 128).all()
        assert np.array_equal(res[:, ~m], plan.original[:, ~m]) and np.array_equal(res[:, m], raw[:, m])
    elif task == "outpaint":
        assert res.shape == (5, 64, 64, 3) and np.array_equal(res[:, 16:48, 16:48], plan.original)
    elif task == "interpolate":
        assert res.shape == (9, 32, 32, 3) and np.array_equal(res[::2], plan.original)
        assert np.array_equal(res[1::2], raw[1::2])
    else:
        assert np.array_equal(res, raw)


def test_bad_edits(pipe, tmp_path):
    with pytest.raises(GenerationError, match="instruction is empty"):
        plan_edit(clip(), "instruct", "  ")
    with pytest.raises(GenerationError, match="needs a mask"):
        plan_edit(clip(), "inpaint")
    with pytest.raises(GenerationError, match="not inside"):
        make_mask((0, 0, 50, 10), 32, 32)
    with pytest.raises(GenerationError, match="unknown"):
        plan_edit(clip(), "recolour")
    with pytest.raises(GenerationError, match="x0,y0,x1,y1"):
        make_mask("1,2,3", 32, 32)
    from PIL import Image

    png = tmp_path / "m.png"
    img = np.zeros((16, 16), dtype=np.uint8)
    img[:8, :8] = 255
    Image.fromarray(img).save(png)
    m = make_mask(str(png), 32, 32)
    assert m[:16, :16].all() and m.sum() == 256
