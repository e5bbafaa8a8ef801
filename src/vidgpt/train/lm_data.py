"""LM training data: sources of documents, mixed by weight, formatted on the fly, packed into rows.

Sources (`SourceConfig.kind`):
- `synthetic`: random code records made on the fly straight from the vocabulary (no text tokenizer):
  a prompt of "word" ids, then a visual block (header, blueprint, fine) whose codes depend on the prompt,
  then EOS. For tiny runs and tests.
- `shards`: Parquet (or JSONL) files / folders of records (docs/CONTRACTS.md): code records
  (`codes`, `shape`, `blueprint_codes`, `captions`, `edit`) are formatted through vidgpt.layout
  (text-to-video / image; an `edit` record is an edit, or a continuation without an instruction),
  `input_ids` records are used as they are (`loss_mask` optional), `text` records are plain text.
- `text`: .txt (documents separated by blank lines), .jsonl / .parquet with a `text` field.

Every source is an endless, deterministic stream (reshuffled each epoch from the seed). Records whose
index is a multiple of `holdout_every` form the held-out split (synthetic: a different seed). The mixture
picks a source per document by weight with its own seeded generator. Every process builds the same
stream and takes every world_size-th row, so the data position is just the number of rows consumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from ..layout import PROMPT, STRUCTURE, TEXT, VISUAL, VisualBlock, blueprint_shape
from ..vocab import UnifiedVocab
from .packing import Document, PackStats, pack

KIND_NAMES = {"prompt": PROMPT, "text": TEXT, "visual": VISUAL, "structure": STRUCTURE}


@dataclass
class SourceConfig:
    kind: str = "synthetic"  # synthetic | shards | text
    paths: list[str] = field(default_factory=list)  # files or folders (shards, text)
    weight: float = 1.0  # mixture weight (normalised over sources)
    streaming: bool = False  # datasets streaming for large shard sets
    # synthetic only
    shapes: list[list[int]] = field(default_factory=lambda: [[1, 4, 4], [2, 4, 4]])  # latent (t, h, w) to draw
    words: int = 16  # distinct prompt words (each picks a code palette)
    prompt_words: int = 4


@dataclass
class LMDataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    chat: bool = True  # chat layout (the backbone's template); false = plain layout
    blueprint: bool = True  # put the blueprint section before the fine codes when a record has one
    loss_on: list[str] = field(default_factory=lambda: ["text", "visual", "structure"])  # token kinds trained on
    visual_loss_weight: float = 1.0  # extra weight of VISUAL tokens in the loss
    long_docs: str = "split"  # split | drop: documents longer than seq_len
    holdout_every: int = 50  # record i is held out for eval when i % holdout_every == 0


def kind_weights(cfg: LMDataConfig) -> dict[int, float]:
    unknown = [k for k in cfg.loss_on if k not in KIND_NAMES]
    if unknown:
        raise DataError(f"loss_on: unknown kind {unknown[0]!r} (known: {', '.join(KIND_NAMES)})")
    on = {KIND_NAMES[k] for k in cfg.loss_on}
    return {k: (0.0 if k not in on else (cfg.visual_loss_weight if k == VISUAL else 1.0)) for k in KIND_NAMES.values()}


def to_document(ids: list[int], kinds: list[int], weights_by_kind: dict[int, float]) -> Document:
    return Document(list(ids), [weights_by_kind[k] for k in kinds], list(kinds))


# --- synthetic ---------------------------------------------------------------------------------------------


def synthetic_documents(src: SourceConfig, vocab: UnifiedVocab, eos_id: int, seed: int,
                        weights_by_kind: dict[int, float], blueprint: bool = True) -> Iterator[Document]:
    """Endless random code documents: prompt words -> a clip whose codes come from the words' palettes."""
    rng = np.random.default_rng(seed)
    n_codes = 2**vocab.spec.codebook_bits
    word_rng = np.random.default_rng(1234)
    text_ids = np.arange(3, max(4, vocab.offset))
    word_ids = word_rng.choice(text_ids, size=(src.words, 2), replace=len(text_ids) < 2 * src.words)
    palettes = word_rng.integers(0, n_codes, size=(src.words, 4))
    while True:
        words = rng.integers(0, src.words, size=src.prompt_words)
        ids = [int(x) for w in words for x in word_ids[w]]
        kinds = [PROMPT] * len(ids)
        t, h, w = (int(x) for x in src.shapes[rng.integers(len(src.shapes))])
        palette = palettes[words].reshape(-1)
        fine = palette[rng.integers(0, len(palette), size=(t, h, w))]
        bp = fine[:, ::2, ::2][:, : (h + 1) // 2, : (w + 1) // 2] if blueprint else None
        block = VisualBlock((t, h, w), fine=fine, blueprint=bp)
        bids = _encode_block(vocab, block)
        ids += bids + [eos_id]
        kinds += [VISUAL if vocab.visual_offset <= b < vocab.end else STRUCTURE for b in bids]
        kinds += [STRUCTURE]
        yield to_document(ids, kinds, weights_by_kind)


def _encode_block(vocab: UnifiedVocab, block: VisualBlock) -> list[int]:
    ids = [vocab.vision_start_id, *vocab.header_ids(block.shape)]
    if block.blueprint is not None:
        ids += [vocab.blueprint_id, *vocab.codes_to_ids(block.blueprint).tolist()]
    if block.fine is not None:
        ids += [vocab.fine_id, *vocab.codes_to_ids(block.fine).tolist()]
    return ids + [vocab.vision_end_id]


# --- files and records ----------------------------------------------------------------------------------------

RECORD_EXTS = (".parquet", ".jsonl", ".json")
TEXT_EXTS = (".txt", ".md")


def list_files(paths: list[str], exts: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.suffix in exts and not f.name.startswith("."))
            parquet = [f for f in found if f.suffix == ".parquet"]
            if parquet:  # a token shard folder: its manifest/progress/report JSON are not records
                found = parquet
            if not found:
                raise DataError(f"{path}: no {'/'.join(exts)} files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not files:
        raise DataError("a shards/text source needs `paths`")
    return files


def load_records(files: list[Path], streaming: bool):
    """A datasets Dataset (or IterableDataset when streaming) over Parquet or JSONL files."""
    import datasets

    kinds = {f.suffix for f in files}
    if len(kinds) > 1:
        raise DataError(f"{files[0].parent}: mixed file types {sorted(kinds)} in one source; use one source per type")
    builder = "parquet" if files[0].suffix == ".parquet" else "json"
    try:
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", streaming=streaming)
    except Exception as e:
        raise DataError(f"{files[0]}: cannot read records ({str(e).splitlines()[0]})") from e


def text_file_documents(files: list[Path]) -> list[str]:
    docs: list[str] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{f}: cannot read text ({e})") from e
        docs += [d.strip() for d in text.split("\n\n") if d.strip()]
    return docs


class RecordFormatter:
    """Turns one record (code / tokens / text) into a Document through the layout."""

    def __init__(self, vocab: UnifiedVocab, text_tokenizer, cfg: LMDataConfig):
        from ..layout import Layout

        self.vocab = vocab
        self.tok = text_tokenizer
        self.cfg = cfg
        self.wk = kind_weights(cfg)
        self.layout = Layout(vocab, text_tokenizer, chat=cfg.chat) if text_tokenizer is not None else None
        self.eos = getattr(text_tokenizer, "eos_token_id", None)

    def _block(self, codes, shape, bp_codes=None, where="record") -> VisualBlock:
        if shape is None or codes is None:
            raise DataError(f"{where}: code record without codes/shape")
        shape = tuple(int(x) for x in shape)
        fine = np.asarray(codes, dtype=np.int64).reshape(shape)
        bp = None
        if self.cfg.blueprint and bp_codes is not None:
            bp = np.asarray(bp_codes, dtype=np.int64).reshape(blueprint_shape(shape))
        return VisualBlock(shape, fine=fine, blueprint=bp)

    def __call__(self, rec: dict, rng: np.random.Generator, where: str = "record") -> Document | None:
        from .. import layout as L

        if rec.get("input_ids") is not None:
            ids = list(rec["input_ids"])
            mask = rec.get("loss_mask")
            kinds = [TEXT if (mask is None or mask[i]) else PROMPT for i in range(len(ids))]
            return to_document(ids, kinds, self.wk)
        if self.layout is None:
            raise DataError(f"{where}: text or code records need the model's text tokenizer")
        if rec.get("codes") is not None:
            caps = [c for c in (rec.get("captions") or []) if c] or [rec.get("caption") or ""]
            caption = caps[int(rng.integers(len(caps)))]
            target = self._block(rec["codes"], rec.get("shape"), rec.get("blueprint_codes"), where)
            edit = rec.get("edit")
            if edit:
                source = self._block(edit.get("source_codes"), edit.get("source_shape"), None, where)
                instr = edit.get("instruction")
                sample = L.edit(source, instr, target) if instr else L.continuation(source, target)
            elif target.shape[0] == 1:
                sample = L.image(caption, target)
            else:
                sample = L.text_to_video(caption, target)
            f = self.layout.format(sample)
            return to_document(f.input_ids, f.kinds, self.wk)
        if rec.get("text"):
            ids = list(self.tok(rec["text"], add_special_tokens=False)["input_ids"])
            if self.eos is not None:
                ids.append(self.eos)
            return to_document(ids, [TEXT] * len(ids), self.wk)
        return None


def record_documents(src: SourceConfig, fmt: RecordFormatter, seed: int, split: str, holdout_every: int,
                     text_tokenizer=None) -> Iterator[Document]:
    """Endless documents from a shards/text source, one split ('train' or 'eval')."""
    rng = np.random.default_rng(seed)
    if src.kind == "text" and all(Path(p).suffix in TEXT_EXTS for p in src.paths if Path(p).is_file()):
        files = list_files(src.paths, TEXT_EXTS)
        records = [{"text": t} for t in text_file_documents(files)]
        streaming = False
    else:
        files = list_files(src.paths, RECORD_EXTS)
        records = load_records(files, src.streaming)
        streaming = src.streaming

    def keep(i: int) -> bool:
        held = holdout_every > 0 and i % holdout_every == 0
        return held if split == "eval" else not held

    epoch = 0
    while True:
        made = 0
        if streaming:
            stream = records.shuffle(seed=seed + epoch, buffer_size=1000) if split == "train" else records
            it = enumerate(stream)
        else:
            order = np.arange(len(records))
            if split == "train":
                order = np.random.default_rng(seed + epoch).permutation(len(records))
            it = ((int(i), records[int(i)]) for i in order)
        for i, rec in it:
            if not keep(i):
                continue
            doc = fmt(rec, rng, where=f"{files[0].parent} record {i}")
            if doc is not None:
                made += 1
                yield doc
        if made == 0:
            raise DataError(f"{src.paths}: no usable {split} records (holdout_every={holdout_every})")
        epoch += 1


# --- the mixture ----------------------------------------------------------------------------------------------------


def mixed_documents(cfg: LMDataConfig, vocab: UnifiedVocab, text_tokenizer, seed: int, split: str = "train",
                    eos_id: int | None = None) -> Iterator[Document]:
    """Endless documents drawn from the sources by weight (deterministic for a seed and split)."""
    if not cfg.sources:
        raise DataError("data.sources is empty")
    wk = kind_weights(cfg)
    if eos_id is None:
        eos_id = getattr(text_tokenizer, "eos_token_id", None)
    if eos_id is None:
        eos_id = 2
    fmt = None
    streams = []
    for k, src in enumerate(cfg.sources):
        s = seed * 1000 + k + (500 if split == "eval" else 0)
        if src.kind == "synthetic":
            streams.append(synthetic_documents(src, vocab, eos_id, s, wk, cfg.blueprint))
        elif src.kind in ("shards", "text"):
            if fmt is None:
                fmt = RecordFormatter(vocab, text_tokenizer, cfg)
            streams.append(record_documents(src, fmt, s, split, cfg.holdout_every, text_tokenizer))
        else:
            raise DataError(f"data source {k}: unknown kind {src.kind!r} (synthetic, shards, text)")
    w = np.array([max(0.0, s.weight) for s in cfg.sources], dtype=np.float64)
    if w.sum() <= 0:
        raise DataError("data.sources: mixture weights sum to 0")
    w /= w.sum()
    rng = np.random.default_rng(seed + (7 if split == "eval" else 0))
    while True:
        yield next(streams[int(rng.choice(len(streams), p=w))])


def packed_rows(cfg: LMDataConfig, vocab: UnifiedVocab, text_tokenizer, seq_len: int, seed: int,
                split: str = "train", pad_id: int = 0, rank: int = 0, world_size: int = 1, skip: int = 0,
                stats: PackStats | None = None) -> Iterator[dict]:
    """Packed rows for this process: global rows rank, rank + world_size, ... after skipping `skip` global rows."""
    docs = mixed_documents(cfg, vocab, text_tokenizer, seed, split)
    for i, row in enumerate(pack(docs, seq_len, pad_id, cfg.long_docs, stats)):
        if i < skip:
            continue
        if (i - skip) % world_size == rank:
            yield row


def write_records_jsonl(path: str | Path, records: list[dict]) -> Path:
    """Small helper for tests and tools: write records as JSONL."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    return p
