"""tools/motion_order_probe.py: the orders' layouts, the grid embeddings' cell indices and the move reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

@pytest.fixture(scope="module")
def probe(load_tool):
    return load_tool("motion_order_probe")


def test_orders(probe):
    shape = (3, 2, 4)
    assert (probe.permutation(shape, "grid") == np.arange(24)).all()
    time_major = probe.permutation(shape, "time")
    assert list(time_major[:3]) == [0, 8, 16]  # one cell's latent frames next to each other
    with pytest.raises(SystemExit):
        probe.permutation(shape, "spiral")


def test_grid_embeddings_index_frame_row_column(probe):
    torch.manual_seed(0)
    t, h, w = 3, 8, 8
    toy = probe.Toy(vocab=20, d=64, layers=1, heads=1, n=3 + t * h * w, grid=(t, h, w))
    assert tuple(toy.cell[:, 65].tolist()) == (1, 0, 1)  # frame-major: 64 cells a frame, 8 a row
    assert tuple(toy.cell[:, 191].tolist()) == (2, 7, 7)
    ids = torch.randint(0, 20, (2, 3 + 10))
    out = toy(ids)
    assert out.shape == (2, 13, 20)
    # the embeddings touch the code positions only: the conditioning tokens' logits do not depend on them
    with torch.no_grad():
        toy.pos_w.weight.add_(1.0)
    out2 = toy(ids)
    assert torch.allclose(out[:, :3], out2[:, :3]) and not torch.allclose(out[:, 3:], out2[:, 3:])


def test_moved_reads_a_shift(probe):
    codes = np.zeros((3, 8, 8), dtype=np.int64)
    mask0 = np.zeros((8, 8), dtype=bool)
    mask0[3:5, 1:3] = True
    for f, x in enumerate((1, 3, 5)):
        codes[f, 3:5, x : x + 2] = 7
    assert probe.moved(codes, mask0) == "moving right"
    assert probe.moved(codes[:, :, ::-1].copy(), mask0[:, ::-1].copy()) == "moving left"
    assert probe.moved(np.zeros((3, 8, 8), dtype=np.int64), mask0) is None  # nothing changed


def test_localize_keeps_far_cells_and_changes_only_near_the_object(probe):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 50, (3, 8, 8))
    mask = np.zeros((3, 8, 8), dtype=bool)
    mask[0, 2, 2] = mask[1, 2, 3] = mask[2, 2, 4] = True  # one cell moving right
    out = probe.localize(codes, mask, 1)
    assert (out[0] == codes[0]).all()  # latent frame 0 as it was
    near1 = probe.dilate(mask[0] | mask[1], 1)
    assert near1.sum() == 12 and near1[1:4, 1:5].all()  # rows 1-3, columns 1-4
    assert (out[1][near1] == codes[1][near1]).all() and (out[1][~near1] == codes[0][~near1]).all()
    near2 = probe.dilate(mask[1] | mask[2], 1)
    assert (out[2][near2] == codes[2][near2]).all() and (out[2][~near2] == out[1][~near2]).all()
    # radius 0: only the object's own cells (in either frame) may change; a still clip does not change at all
    only = probe.localize(codes, mask, 0)
    assert ((only[1] != only[0]) <= (mask[0] | mask[1])).all()
    still = np.repeat(codes[:1], 3, 0)
    assert (probe.localize(still, mask, 1) == still).all()


def test_load_reads_the_section_asked_for(probe, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    fine = np.arange(3 * 8 * 8, dtype=np.int32)
    blue = np.arange(3 * 4 * 4, dtype=np.int32) + 1000
    mask = np.zeros(3 * 8 * 8, dtype=np.uint8)
    mask[:2] = 1
    pq.write_table(pa.table({
        "caption": ["red circle, moving left", "a red circle"],
        "codes": [fine.tolist(), fine.tolist()], "shape": [[3, 8, 8], [3, 8, 8]],
        "blueprint_codes": [blue.tolist(), blue.tolist()], "blueprint_shape": [[3, 4, 4], [3, 4, 4]],
        "kind": ["video", "image"],
        "object_mask": [mask.tolist(), mask.tolist()], "blueprint_object_mask": [[0] * 48, [0] * 48],
    }), tmp_path / "part-0.parquet")
    (rec,) = probe.load([str(tmp_path)], section="fine")  # the image record is skipped
    assert rec[:3] == ("red", "circle", "moving left")
    assert rec[3].shape == (3, 8, 8) and (rec[3].reshape(-1) == fine).all()
    assert rec[4].shape == (3, 8, 8) and rec[4].reshape(-1)[:2].all() and rec[4].sum() == 2
    (rec,) = probe.load([str(tmp_path)])  # the blueprint by default
    assert rec[3].shape == (3, 4, 4) and rec[3].min() == 1000
