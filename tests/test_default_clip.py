"""A model's default clip size (vidgpt.json `default_clip`): recorded from the training shards, used by generate."""

import json

from vidgpt.generate.tiny import tiny_pipeline
from vidgpt.train.lm_data import LMDataConfig, SourceConfig, clip_size_of_sources


def _shards(tmp_path, name, frames, size):
    d = tmp_path / name
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"settings": {"frames": frames, "height": size, "width": size}}))
    return str(d)


def test_clip_size_of_sources_agrees_or_none(tmp_path):
    a, b = _shards(tmp_path, "a", 9, 64), _shards(tmp_path, "b", 9, 64)
    c = _shards(tmp_path, "c", 17, 64)
    text = SourceConfig(kind="text", paths=[str(tmp_path)])
    same = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[a, b]), text])
    assert clip_size_of_sources(same) == {"frames": 9, "height": 64, "width": 64}
    mixed = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[a]), SourceConfig(kind="shards", paths=[c])])
    assert clip_size_of_sources(mixed) is None
    no_manifest = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[str(tmp_path)])])
    assert clip_size_of_sources(no_manifest) is None
    assert clip_size_of_sources(LMDataConfig()) is None  # synthetic only
    chat = tmp_path / "chat"  # JSONL chat answers as a `shards` source: no clips, no say in the size
    chat.mkdir()
    (chat / "chat-00000.jsonl").write_text('{"messages": []}\n')
    with_chat = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[a]), SourceConfig(kind="shards", paths=[str(chat)])])
    assert clip_size_of_sources(with_chat) == {"frames": 9, "height": 64, "width": 64}
    bare = tmp_path / "bare"  # Parquet clips without a manifest: the size is unknown
    bare.mkdir()
    (bare / "part-0.parquet").write_bytes(b"")
    assert clip_size_of_sources(LMDataConfig(sources=[SourceConfig(kind="shards", paths=[a, str(bare)])])) is None
    # images (1 frame) at the clips' size are 1-frame clips: the clips decide; at another size they do not agree
    img = _shards(tmp_path, "img", 1, 64)
    img_other = _shards(tmp_path, "img128", 1, 128)
    with_images = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[a]), SourceConfig(kind="shards", paths=[img])])
    assert clip_size_of_sources(with_images) == {"frames": 9, "height": 64, "width": 64}
    odd = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[a]), SourceConfig(kind="shards", paths=[img_other])])
    assert clip_size_of_sources(odd) is None
    only_images = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[img])])
    assert clip_size_of_sources(only_images) == {"frames": 1, "height": 64, "width": 64}
    # build-lm --num 0 --images N records its default --frames (17) in settings: such a folder holds images only
    built = tmp_path / "built_images"
    built.mkdir()
    (built / "manifest.json").write_text(json.dumps({"settings": {"num": 0, "images": 40, "edits": 0, "continuations": 0,
                                                                  "frames": 17, "height": 64, "width": 64}}))
    with_built = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[a]), SourceConfig(kind="shards", paths=[str(built)])])
    assert clip_size_of_sources(with_built) == {"frames": 9, "height": 64, "width": 64}


def test_generate_draws_the_models_default_clip(text_tok):
    pipe = tiny_pipeline(text_tok, bits=6, max_positions=1024, meta={"default_clip": {"frames": 5, "height": 16, "width": 32}})
    assert pipe.default_clip == (5, 16, 32)
    out = pipe.generate("a red circle", seed=0, cfg=1.0, decode=False)
    assert out.blocks[0].shape == (2, 2, 4)  # 5x16x32 at 4x time, 8x space
    told = pipe.generate("a red circle", frames=1, seed=0, cfg=1.0, decode=False)
    assert told.blocks[0].shape == (1, 2, 4)  # an explicit size wins; the rest stays the model's
    plain = tiny_pipeline(text_tok, bits=6, max_positions=2048)
    assert plain.default_clip == (17, 128, 128)


def test_a_folder_of_parallel_builds_has_the_size_its_builds_agree_on(tmp_path):
    """Parallel builders write one folder each under a common one (data/gpu/t2v/s1, s2, ...): their manifests decide."""
    root = tmp_path / "t2v"
    root.mkdir()
    _shards(root, "s1", 9, 128), _shards(root, "s2", 9, 128)
    folder = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[str(root)])])
    assert clip_size_of_sources(folder) == {"frames": 9, "height": 128, "width": 128}
    _shards(root, "s3", 17, 128)  # one build at another length: no single size
    assert clip_size_of_sources(folder) is None
