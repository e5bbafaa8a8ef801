"""Video/image I/O: round trips, odd formats, resampling, crops, bad input, batches, atomic writes."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidgpt.data import video_io as vio
from vidgpt.errors import VideoReadError, VideoWriteError


def mae(a, b) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------------------------------------
# reading valid files


def test_mp4_round_trip(media_files):
    frames = vio.read_video(media_files.clip)
    assert frames.dtype == np.uint8 and frames.shape == (17, 48, 64, 3)
    assert mae(frames, media_files.clip_frames) < 6  # h264 is lossy


def test_gif_round_trip(media_files):
    frames = vio.read_video(media_files.gif)
    assert frames.shape == (9, 32, 40, 3)
    assert mae(frames, media_files.gif_frames) < 12  # 256-colour palette


def test_image_is_one_frame(media_files, tmp_path):
    frames = vio.read_video(media_files.png)
    assert frames.shape == (1, 40, 56, 3)
    assert np.array_equal(frames[0], media_files.png_frame)
    jpg = tmp_path / "x.jpeg"
    Image.fromarray(media_files.png_frame).save(jpg, quality=95)
    assert mae(vio.read_video(jpg)[0], media_files.png_frame) < 6


def test_frames_dir_natural_order(media_files):
    frames = vio.read_video(media_files.frames_dir)
    assert frames.shape == (12, 16, 24, 3)
    assert [int(f[0, 0, 0]) for f in frames] == [10 * i for i in range(1, 13)]  # frame2 before frame10
    part = vio.read_video(media_files.frames_dir, start_frame=2, max_frames=3)
    assert [int(f[0, 0, 0]) for f in part] == [30, 40, 50]


def test_max_frames_and_start_frame(media_files):
    full = vio.read_video(media_files.clip)
    part = vio.read_video(media_files.clip, start_frame=3, max_frames=5)
    assert part.shape[0] == 5
    assert np.array_equal(part, full[3:8])


def test_fps_resampling_on_read(media_files):
    full = vio.read_video(media_files.clip)  # 8 fps, 17 frames
    half = vio.read_video(media_files.clip, fps=4)
    double = vio.read_video(media_files.clip, fps=16)
    assert np.array_equal(half, vio.resample_fps(full, 8, 4))
    assert np.array_equal(double, vio.resample_fps(full, 8, 16))
    assert len(half) in (8, 9) and len(double) == 34
    assert len(vio.read_video(media_files.clip, fps=4, max_frames=3)) == 3


def _write_with_pyav(path, frames, codec, pix_fmt, rotation=None):
    t, h, w, _ = frames.shape
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=8)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            s.set_display_rotation(rotation)
        for k, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = k
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.mark.parametrize(
    "name,codec,pix_fmt,bound",
    [
        ("yuv444.mp4", "libx264", "yuv444p", 6),
        ("ten_bit.mkv", "ffv1", "yuv420p10le", 6),
        ("rgba.mov", "qtrle", "argb", 1),
        ("gray.mkv", "ffv1", "gray", None),
        ("mpeg4.avi", "mpeg4", "yuv420p", 10),
    ],
)
def test_odd_pixel_formats(tmp_path, make_frames, name, codec, pix_fmt, bound):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in PyAV's ffmpeg")
    src = make_frames(5, 32, 48)
    _write_with_pyav(tmp_path / name, src, codec, pix_fmt)
    frames = vio.read_video(tmp_path / name)
    assert frames.shape == (5, 32, 48, 3) and frames.dtype == np.uint8
    if bound is None:  # grayscale: all channels equal, close to the luma
        assert np.array_equal(frames[..., 0], frames[..., 1])
        luma = (src.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round()
        assert mae(frames[..., 0], luma) < 8
    else:
        assert mae(frames, src) < bound


def test_rotation_metadata(tmp_path, make_frames):
    src = make_frames(3, 32, 48)
    _write_with_pyav(tmp_path / "rot.mp4", src, "libx264" if "libx264" in av.codecs_available else "mpeg4", "yuv420p", 90)
    frames = vio.read_video(tmp_path / "rot.mp4")
    assert frames.shape == (3, 48, 32, 3)
    assert mae(frames[0], np.rot90(src[0])) < 8


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "I;16", "LA"])
def test_odd_image_modes(tmp_path, make_frames, mode):
    rgb = make_frames(1, 20, 30)[0]
    img = Image.fromarray(rgb)
    if mode == "I;16":
        img = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257))
    elif mode in ("RGBA", "LA"):
        img = img.convert(mode)
        img.putalpha(128)
    else:
        img = img.convert(mode)
    img.save(tmp_path / "x.png")
    frames = vio.read_video(tmp_path / "x.png")
    assert frames.shape == (1, 20, 30, 3) and frames.dtype == np.uint8
    if mode == "I;16":
        assert mae(frames[0, ..., 0], rgb[..., 0]) <= 1
    elif mode == "RGBA":
        assert np.array_equal(frames[0], rgb)  # alpha dropped, colour kept


def test_read_video_meta(media_files):
    meta = vio.read_video_meta(media_files.clip)
    assert (meta["kind"], meta["frames"], meta["height"], meta["width"]) == ("video", 17, 48, 64)
    assert meta["fps"] == pytest.approx(8)
    assert vio.read_video_meta(media_files.png)["frames"] == 1
    assert vio.read_video_meta(media_files.frames_dir)["frames"] == 12


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "attr,problem",
    [
        ("missing", "no such file"),
        ("empty", "empty file"),
        ("text", "not a video file"),
        ("truncated", "truncated or corrupt"),
        ("empty_dir", "no image frames"),
    ],
)
def test_bad_input_raises_one_line_error(media_files, attr, problem):
    path = getattr(media_files, attr)
    with pytest.raises(VideoReadError) as ei:
        vio.read_video(path)
    msg = str(ei.value)
    assert path.name in msg and problem in msg and "\n" not in msg


def test_truncated_allow_partial(media_files):
    with pytest.warns(UserWarning, match="truncated"):
        frames = vio.read_video(media_files.truncated, allow_partial=True)
    assert 0 < len(frames) < 24 and frames.shape[1:] == (64, 96, 3)


def test_size_guards(media_files, tmp_path):
    with pytest.raises(VideoReadError, match="clip.mp4: .*budget"):
        vio.read_video(media_files.clip, max_pixels=48 * 64 * 5)
    assert len(vio.read_video(media_files.clip, max_pixels=48 * 64 * 5, max_frames=5)) == 5
    with pytest.raises(VideoReadError, match="still.png: .*limit per side"):
        vio.read_video(media_files.png, max_side=32)
    with pytest.raises(VideoReadError, match="frames: .*budget"):
        vio.read_video(media_files.frames_dir, max_pixels=16 * 24 * 4)


def test_corrupt_image_and_mixed_frame_sizes(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(VideoReadError, match="bad.png: not a readable image"):
        vio.read_video(tmp_path / "bad.png")
    d = tmp_path / "mixed"
    d.mkdir()
    Image.new("RGB", (8, 8)).save(d / "a1.png")
    Image.new("RGB", (8, 10)).save(d / "a2.png")
    with pytest.raises(VideoReadError, match="a2.png: frame size"):
        vio.read_video(d)


# ---------------------------------------------------------------------------------------------
# batches


def test_read_many_skips_and_lists_bad_files(media_files):
    paths = [media_files.clip, *media_files.bad, media_files.png]
    ok, failed = vio.read_many(paths, max_frames=12)  # the truncated clip breaks before 12 frames
    assert [p for p, _ in ok] == [media_files.clip, media_files.png]
    assert ok[0][1].shape == (12, 48, 64, 3)
    assert [p for p, _ in failed] == media_files.bad
    assert all(p.name in msg for p, msg in failed)
    report: list = []
    assert len(list(vio.iter_videos(paths, report))) == 2 and len(report) == 5


def test_list_media(media_files, tmp_path):
    listed = vio.list_media(media_files.dir)
    names = [p.name for p in listed]
    assert "clip.mp4" in names and "anim.gif" in names and "frame12.png" in names
    assert "notes.txt" not in names
    assert names.index("frame2.png") < names.index("frame10.png")
    as_clip = vio.list_media(media_files.dir, frames_dir_as_clip=True)
    assert media_files.frames_dir in as_clip and not any(p.name == "frame1.png" for p in as_clip)
    assert vio.list_media(media_files.dir, recursive=False).count(media_files.frames_dir / "frame1.png") == 0
    (tmp_path / ".hidden.mp4").write_bytes(b"x")
    assert vio.list_media(tmp_path) == []
    assert vio.list_media([media_files.missing]) == [media_files.missing]  # reported on read, not dropped


# ---------------------------------------------------------------------------------------------
# transforms


def test_resample_fps_counts(make_frames):
    f = make_frames(30, 4, 4)
    assert len(vio.resample_fps(f, 30, 10)) == 10
    assert len(vio.resample_fps(f, 30, 30)) == 30
    up = vio.resample_fps(f[:8], 8, 16)
    assert len(up) == 16 and np.array_equal(up[0], up[1]) and np.array_equal(up[15], f[7])
    assert len(vio.resample_fps(f[:1], 8, 2)) == 1


@pytest.mark.parametrize("size", [(32, 48), (48, 32), (16, 16), (64, 100)])
def test_resize_and_crop_shapes(make_frames, size):
    frames = make_frames(3, 40, 60)
    out = vio.resize_and_crop(frames, *size)
    assert out.shape == (3, *size, 3) and out.dtype == np.uint8
    rnd = vio.resize_and_crop(frames, *size, crop="random", rng=np.random.default_rng(0))
    assert rnd.shape == out.shape


def test_resize_and_crop_content():
    frames = np.zeros((1, 20, 40, 3), np.uint8)
    frames[:, :, 10:30] = 255  # bright centre band
    center = vio.resize_and_crop(frames, 20, 20)
    assert center.min() == 255  # a centre crop keeps only the band
    a = vio.resize_and_crop(frames, 20, 20, crop="random", rng=np.random.default_rng(3))
    b = vio.resize_and_crop(frames, 20, 20, crop="random", rng=np.random.default_rng(3))
    assert np.array_equal(a, b)


def test_take_frames(make_frames):
    f = make_frames(6, 2, 2)
    assert np.array_equal(vio.take_frames(f, 5, start=1), f[1:6])
    with pytest.raises(vio.FrameCountError, match="6 frames, need 9"):
        vio.take_frames(f, 9)
    rep = vio.take_frames(f, 9, start=2, pad="repeat")
    assert len(rep) == 9 and np.array_equal(rep[3], f[5]) and np.array_equal(rep[8], f[5])
    loop = vio.take_frames(f, 9, start=2, pad="loop")
    assert np.array_equal(loop[4], f[2])


def test_valid_frame_counts():
    assert [n for n in range(20) if vio.valid_frame_count(n)] == [1, 5, 9, 13, 17]
    assert [vio.largest_valid_frames(n) for n in (0, 1, 4, 5, 16, 17, 18)] == [0, 1, 1, 5, 13, 17, 17]


def test_tensor_round_trip(make_frames):
    f = make_frames(5, 8, 12)
    x = vio.frames_to_tensor(f)
    assert x.shape == (3, 5, 8, 12) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert np.array_equal(vio.tensor_to_frames(x), f)
    assert np.array_equal(vio.tensor_to_frames(x[None]), f)
    assert vio.tensor_to_frames(torch.full((3, 1, 2, 2), 5.0)).max() == 255  # clamped


# ---------------------------------------------------------------------------------------------
# writing


def test_write_odd_size_pads_to_even(tmp_path, make_frames):
    f = make_frames(5, 33, 47)
    out = vio.read_video(vio.write_video(tmp_path / "odd.mp4", f))
    assert out.shape == (5, 34, 48, 3)
    assert mae(out[:, :33, :47], f) < 6


def test_write_is_atomic(tmp_path, make_frames, monkeypatch):
    f = make_frames(5, 16, 16)
    target = tmp_path / "out.mp4"
    seen = []
    real = vio._write_av

    def spy(tmp, *a):
        seen.append(tmp)
        return real(tmp, *a)

    monkeypatch.setattr(vio, "_write_av", spy)
    vio.write_video(target, f)
    assert seen[0].name.startswith(".out.tmp") and seen[0].suffix == ".mp4"
    before = target.read_bytes()

    def boom(tmp, *a):
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(vio, "_write_av", boom)
    with pytest.raises(VideoWriteError, match="out.mp4: cannot write"):
        vio.write_video(target, f)
    assert target.read_bytes() == before  # not clobbered
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]  # no temp files left


def test_write_errors(tmp_path, make_frames):
    f = make_frames(3, 8, 8)
    with pytest.raises(VideoWriteError, match="one frame"):
        vio.write_video(tmp_path / "x.png", f)
    with pytest.raises(VideoWriteError, match="unsupported"):
        vio.write_video(tmp_path / "x.xyz", f)
    with pytest.raises(VideoWriteError, match="uint8"):
        vio.write_video(tmp_path / "x.mp4", f.astype(np.float32))
    vio.write_video(tmp_path / "one.png", f[:1])
    assert np.array_equal(vio.read_video(tmp_path / "one.png"), f[:1])
    assert sorted(os.listdir(tmp_path)) == ["one.png"]


def test_contact_sheet(tmp_path, make_frames):
    f = make_frames(5, 10, 12)
    path = vio.save_contact_sheet(tmp_path / "sheet.png", f, cols=3, labels=list("abcde"))
    with Image.open(path) as img:
        w, h = img.size
    assert w == 3 * (12 + 2) + 2 and h == 2 * (10 + 12 + 2) + 2
