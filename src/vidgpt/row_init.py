"""How the new visual rows of an extended LLM start: from the mean of the text rows, plus structure.

`vidgpt lm extend --row-init` and `model.row_init` (on-the-fly extension in `vidgpt lm train`) pick one of

- `mean`: the mean of the text rows + a little noise (resize_with_mean_init in vidgpt.backbone). Thousands of
  near-identical, near-zero rows: the LLM cannot tell one code from another until training has moved them.
- `bits`: + bits(code) @ R, R random [S, K/S, H]: each code starts from its own LFQ bits, so codes that share bits
  (that decode alike) start alike and every code is distinct, at a text token's scale.
- `colour`: + the text embedding of the colour the code decodes to, minus the mean. The video tokenizer decodes
  every code as a flat patch; the patch's RGB is matched (softly) to a palette of colour names, and the row moves
  to the names' text embeddings (" red", " dark green", as a caption writes them). With tied embeddings the
  logit of a code is then, from step 0, the LLM's own readiness to say that colour word: a prompt that names
  "red" already lifts the red codes, and a blueprint reads to the LLM like a row of colour words.
- `colour+bits`: both.

Text rows and the layout tokens' rows never move. The code colours are not cached: computing them decodes
2**K flat patches (~45 s for K=14 on one CPU thread) at every extension.
"""

from __future__ import annotations

import numpy as np

from .errors import ModelError
from .vocab import UnifiedVocab

ROW_INITS = ("mean", "bits", "colour", "colour+bits")


def embedding_weights(model) -> list:
    """The embedding tensors the new rows live in (one when the head is tied)."""
    weights = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != weights[0].data_ptr():
        weights.append(out.weight)
    return weights


def add_bit_structure(model, vocab: UnifiedVocab, scale: float = 1.0, seed: int = 0) -> None:
    """Visual rows += bits(code) @ R (in place), R scaled so the part has `scale` x the text rows' std."""
    import torch

    from .tokenizer.lfq import codes_to_bits

    if scale <= 0:
        return
    s = vocab.spec
    k = s.bits_per_subtoken
    gen = torch.Generator().manual_seed(seed + 1)
    signs = codes_to_bits(torch.arange(s.rows_per_group), k)
    v0, v1 = vocab.visual_offset, vocab.visual_offset + s.num_visual_rows
    with torch.no_grad():
        for w in embedding_weights(model):
            std = float(w[: vocab.offset].float().std())
            R = torch.randn(s.subtokens, k, w.shape[1], generator=gen) * (scale * std / k**0.5)
            part = torch.cat([signs @ R[g] for g in range(s.subtokens)], 0)
            w[v0:v1] += part.to(w.dtype)


def code_colours(tokenizer, bits: int, patch: int = 2, batch: int = 512) -> np.ndarray:
    """float32 [2**bits, 3]: the RGB (0-255) of each code decoded as a flat patch x patch latent (one frame)."""
    import torch

    n = 1 << bits
    out = np.zeros((n, 3), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, n, batch):
            c = torch.arange(s, min(n, s + batch))
            grid = c.view(-1, 1, 1, 1).expand(-1, 1, patch, patch).contiguous()
            video = tokenizer.decode(grid)  # [b, 3, 1, H, W] in [-1, 1]
            H = video.shape[-1]
            m = H // 4  # the centre half: no border effects
            rgb = (video[:, :, 0, m : H - m, m : H - m].float().mean((-1, -2)) + 1) * 127.5
            out[s : s + len(c)] = rgb.clamp(0, 255).numpy()
    return out


def colour_names() -> tuple[list[str], np.ndarray]:
    """(names, float32 [N, 3] RGB): the project's named colours (object and background) as captions use them."""
    from .data.world.palette import BACKGROUND_COLORS, OBJECT_COLORS

    table = {**OBJECT_COLORS, **BACKGROUND_COLORS}
    return list(table), np.asarray(list(table.values()), dtype=np.float32)


def colour_weights(rgb: np.ndarray, palette: np.ndarray, sigma: float = 30.0) -> np.ndarray:
    """[n, N] soft assignment of each RGB to the palette's colours (rows sum to 1; a Gaussian of the distance)."""
    d2 = ((rgb[:, None, :] - palette[None, :, :]) ** 2).sum(-1)
    logits = -d2 / (2 * sigma**2)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def word_embeddings(model, text_tokenizer, names: list[str]):
    """[N, H]: the mean input embedding of each name's tokens as it appears mid-sentence (" dark green")."""
    import torch

    emb = model.get_input_embeddings().weight
    rows = []
    for name in names:
        ids = text_tokenizer(" " + name, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ModelError(f"the text tokenizer gives no tokens for {name!r}")
        rows.append(emb[torch.tensor(ids)].float().mean(0))
    return torch.stack(rows)


def add_colour_words(model, vocab: UnifiedVocab, text_tokenizer, rgb: np.ndarray, scale: float = 1.0,
                     sigma: float = 30.0) -> None:
    """Visual rows += scale * (sum_w p_w(code) * E(w) - mean of the text rows), in place.

    rgb [2**(K/S), 3]: each sub-token value's decoded colour (code_colours); every sub-token group gets the same.
    """
    import torch

    if scale <= 0:
        return
    s = vocab.spec
    if rgb.shape[0] != s.rows_per_group:
        raise ModelError(f"{rgb.shape[0]} code colours for {s.rows_per_group} rows per sub-token group")
    names, palette = colour_names()
    p = torch.from_numpy(colour_weights(rgb, palette, sigma))  # [rows, N]
    v0 = vocab.visual_offset
    with torch.no_grad():
        words = word_embeddings(model, text_tokenizer, names)  # from the input rows (tied or not, the text's meaning)
        for w in embedding_weights(model):
            mean = w[: vocab.offset].float().mean(0)
            part = (p @ (words - mean)) * scale  # [rows, H]
            for g in range(s.subtokens):
                lo = v0 + g * s.rows_per_group
                w[lo : lo + s.rows_per_group] += part.to(w.dtype)


def apply_row_init(model, vocab: UnifiedVocab, text_tokenizer, row_init: str, *, scale: float = 1.0, seed: int = 0,
                   tokenizer_dir=None) -> None:
    """Add the structure `row_init` names to the (mean-initialised) visual rows, in place."""
    if row_init not in ROW_INITS:
        raise ModelError(f"row_init={row_init!r}: expected one of {', '.join(ROW_INITS)}")
    if "colour" in row_init:
        if tokenizer_dir is None:
            raise ModelError("row_init=colour needs the video tokenizer (its decoder names each code's colour)")
        from .tokenizer import VideoTokenizer

        tok = VideoTokenizer.from_pretrained(str(tokenizer_dir))
        if vocab.spec.subtokens != 1 or tok.config.codebook_bits != vocab.spec.codebook_bits:
            raise ModelError("row_init=colour needs one sub-token per code (S=1) with the tokenizer's K")
        rgb = code_colours(tok, vocab.spec.bits_per_subtoken)
        add_colour_words(model, vocab, text_tokenizer, rgb, scale)
    if "bits" in row_init:
        add_bit_structure(model, vocab, scale, seed)
