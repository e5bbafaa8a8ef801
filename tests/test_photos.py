"""Real photos: discovery (env var, KDE layout, bad files), loading, camera pans/zooms."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vidgpt.data import photos
from vidgpt.errors import VideoReadError


def _save(path, w, h, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (value, value // 2, 255 - value)).save(path)
    return path


@pytest.fixture
def photo_tree(tmp_path):
    root = tmp_path / "photos"
    big = _save(root / "big.png", 400, 300)
    _save(root / "small.png", 100, 100)  # below min_side
    nested = _save(root / "sub" / "deep.jpg", 300, 260)
    (root / "sub" / "notes.txt").write_text("x")
    (root / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    _save(root / ".hidden.png", 400, 400)
    kde = root / "Wall" / "contents" / "images"
    _save(kde / "320x260.jpg", 320, 260)
    kde_best = _save(kde / "400x300.jpg", 400, 300)
    _save(root / "Wall" / "contents" / "screenshot.png", 300, 300)  # the KDE thumbnail, not a photo
    return root, {big, nested, kde_best}


def test_find_photos_explicit_dirs(photo_tree):
    root, expected = photo_tree
    skipped: list = []
    found = photos.find_photos([root], min_side=256, skipped=skipped)
    assert set(found) == expected and len(found) == 3
    assert [p.name for p, _ in skipped] == ["corrupt.jpg"]
    assert len(photos.find_photos([root], min_side=256, limit=2)) == 2
    assert len(photos.find_photos([root], min_side=50)) == 4  # small.png joins


def test_find_photos_env_var(photo_tree, monkeypatch, tmp_path):
    root, expected = photo_tree
    other = _save(tmp_path / "more" / "x.webp", 300, 300).parent
    monkeypatch.setenv(photos.ENV_VAR, f"{root}{__import__('os').pathsep}{other}")
    assert photos.photo_dirs(system=False) == [root, other]
    found = set(photos.find_photos())  # env dirs plus whatever the system has
    assert expected | {other / "x.webp"} <= found


def test_load_photo_downscales(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    assert photos.load_photo(tmp_path / "a.png", max_side=1024).shape == (300, 500, 3)
    assert photos.load_photo(tmp_path / "a.png", max_side=100).shape == (60, 100, 3)
    assert photos.load_photo(tmp_path / "a.jpg", max_side=250).shape == (150, 250, 3)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(VideoReadError, match="bad.jpg"):
        photos.load_photo(tmp_path / "bad.jpg")
    skipped: list = []
    loaded = photos.load_photos([tmp_path / "a.png", tmp_path / "bad.jpg"], max_side=64, skipped=skipped)
    assert len(loaded) == 1 and len(skipped) == 1


def _coordinate_photo(h=240, w=320):
    """R encodes x, G encodes y (smooth), B a fine texture so every move changes pixels."""
    y, x = np.mgrid[0:h, 0:w]
    r = x * 255.0 / (w - 1)
    g = y * 255.0 / (h - 1)
    b = 128 + 100 * np.sin(x / 3.0) * np.cos(y / 4.0)
    return np.stack([r, g, b], -1).round().astype(np.uint8)


@pytest.mark.parametrize("kind", ["pan", "zoom", "pan_zoom", None])
def test_camera_move_clip(kind):
    photo = _coordinate_photo()
    clip = photos.camera_move_clip(photo, np.random.default_rng(1), 9, 32, 48, kind=kind)
    assert clip.shape == (9, 32, 48, 3) and clip.dtype == np.uint8
    diffs = np.abs(np.diff(clip.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (diffs > 0.5).all()  # the camera keeps moving
    boxes = photos.camera_windows(photo.shape[:2], np.random.default_rng(1), 9, 32, 48, kind=kind)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 3] <= 240).all()
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.allclose(widths / heights, 48 / 32)
    for k in (0, -1):  # first and last frames show the photo where the window is
        cx, cy = (boxes[k, 0] + boxes[k, 2]) / 2, (boxes[k, 1] + boxes[k, 3]) / 2
        assert clip[k, ..., 0].mean() == pytest.approx(cx * 255 / 319, abs=3)
        assert clip[k, ..., 1].mean() == pytest.approx(cy * 255 / 239, abs=3)
        x0, y0, x1, y1 = np.round(boxes[k]).astype(int)
        assert abs(int(clip[k, 0, 0, 0]) - int(photo[y0, x0, 0])) < 8


def test_camera_kinds_move_as_named():
    hw = (240, 320)
    pan = photos.camera_windows(hw, np.random.default_rng(2), 9, 32, 32, kind="pan")
    size = pan[:, 2] - pan[:, 0]
    assert np.allclose(size, size[0]) and not np.allclose(pan[0], pan[-1])
    zoom = photos.camera_windows(hw, np.random.default_rng(2), 9, 32, 32, kind="zoom")
    centres = (zoom[:, :2] + zoom[:, 2:]) / 2
    assert np.allclose(centres, centres[0]) and np.ptp(zoom[:, 2] - zoom[:, 0]) > 10
    a = photos.camera_move_clip(_coordinate_photo(), np.random.default_rng(5), 5, 16, 16)
    b = photos.camera_move_clip(_coordinate_photo(), np.random.default_rng(5), 5, 16, 16)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="kind"):
        photos.camera_windows(hw, np.random.default_rng(0), 5, 16, 16, kind="dolly")
