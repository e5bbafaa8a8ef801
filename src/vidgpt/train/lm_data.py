"""LM training data: sources of documents, mixed by weight, formatted on the fly, packed into rows.

Sources (`SourceConfig.kind`):
- `synthetic`: random code records made on the fly straight from the vocabulary (no text tokenizer):
  a prompt of "word" ids, then a visual block (header, blueprint, fine) whose codes depend on the prompt,
  then EOS. For tiny runs and tests.
- `shards`: Parquet (or JSONL) files / folders of records (docs/CONTRACTS.md): code records
  (`codes`, `shape`, `blueprint_codes`, `captions`, `edit`) are formatted through vidgpt.layout
  (text-to-video / image; an `edit` record is an edit, or a continuation without an instruction),
  `input_ids` records are used as they are (`loss_mask` optional), `text` records are plain text,
  `messages` records are chat turns of text (user/assistant; loss on the answers; vidgpt.data.chat_text).
- `text`: .txt (documents separated by blank lines), .jsonl / .parquet with a `text` field.

Every source is an endless, deterministic stream (reshuffled each epoch from the seed). Records whose
index is a multiple of `holdout_every` form the held-out split (synthetic: a different seed). The mixture
picks a source per document by weight with its own seeded generator.

Data at scale: the data are cut into `data.streams` independent streams (default: one per process). A
stream owns every N-th *unit* of the record sources (a Parquet row group, read from the file footer's
offsets, or 256 in-memory records of a JSONL/text source; with fewer units than streams, every N-th
record), has its own mixture, formatter RNG and packer, and global row g comes from stream g % N.
Process r of W handles the streams s with s % W == r (N must be a multiple of W), so it reads only its
own row groups, never another rank's. The global row order depends on N only: runs on 1, 2 or 4
processes with the same N see the same rows. `RowStream.state_dict()` is the position of each stream
(epoch, unit, record, RNG states, the packer's partial rows); resuming from it reads only the row group
being consumed, instead of replaying the stream from the start.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConfigError, DataError
from ..geometry import grow_cells, moved_fine_mask
from ..layout import PROMPT, STRUCTURE, TEXT, VISUAL, VisualBlock, blueprint_shape
from ..vocab import UnifiedVocab
from .packing import PACKINGS, Document, OpenRow, PackStats, make_packer

KIND_NAMES = {"prompt": PROMPT, "text": TEXT, "visual": VISUAL, "structure": STRUCTURE}


@dataclass
class SourceConfig:
    kind: str = "synthetic"  # synthetic | shards | text
    paths: list[str] = field(default_factory=list)  # files or folders (shards, text)
    weight: float = 1.0  # mixture weight (normalised over sources)
    streaming: bool = False  # kept for old configs: Parquet is always read one row group at a time
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
    packing: str = "greedy"  # greedy | best_fit (best fit into 8 open rows, far less padding) | single (one document
    # a row: no block-diagonal mask, ~2.2x faster steps on the CPU for ~250-token documents; vidgpt.train.packing)
    holdout_every: int = 50  # record i is held out for eval when i % holdout_every == 0
    streams: int = 0  # independent data streams (0 = one per process); a multiple of the process count
    # text-to-video and text-to-image documents only (never edits or continuations); 0 = off, and the stream is unchanged
    prompt_dropout: float = 0.0  # share of documents whose prompt is empty: trains the unconditional branch of CFG
    blueprint_only: float = 0.0  # share of documents cut to their blueprint section (~1/5 of the tokens): the part
    #                              the prompt decides, at 5x the documents per token (the fine section follows it)
    object_loss_weight: float = 1.0  # loss weight of the target's video codes that show an object (records with an
    #                                  object mask: synthetic shards from build-lm); the background keeps weight 1
    first_object_codes: int = 0  # the first N object codes of the target (raster order, blueprint first: where the
    first_object_weight: float = 1.0  # context does not show the object yet, so the prompt has to decide its colour)
    #                                   get this extra factor on top of object_loss_weight (0 codes = off)
    motion_loss_weight: float = 1.0  # extra factor on the codes of latent frames >= 1 whose cell changed from
    #                                  object to background or back since the previous latent frame: where the object
    #                                  arrives and where it left, the codes that carry the prompt's motion
    first_move_weight: float = 1.0  # extra factor on the blueprint codes of latent frame 1 next to the object (within
    #                                 one cell of its frame-0 cells), in raster order up to and including the first
    #                                 that changed: the positions that decide the move before the context shows its way
    follow_loss_weight: float = 1.0  # extra factor on the fine codes of latent frames >= 1 under blueprint cells whose
    #                                  code differs from the same cell's in latent frame 0 (where the blueprint says
    #                                  the object went or left): the fine codes only the blueprint's motion decides
    input_noise: float = 0.0  # share of the trained video codes the model READS as random codes (the targets stay
    #                           true; vidgpt.train.input_noise): the prompt has to decide every code, not only the first
    input_noise_mode: str = "fixed"  # fixed: every row at input_noise; uniform: each row at U(0, input_noise)
    stay_noise: float = 0.0  # share of the trained codes of latent frames >= 1 the model READS as the same cell's code
    #                          one latent frame earlier ("nothing moved"; targets true): the motion word has to decide

    def __post_init__(self) -> None:
        if self.packing not in PACKINGS:
            raise ConfigError(f"data.packing={self.packing!r}: expected one of {', '.join(PACKINGS)}")
        weights = {k: getattr(self, k) for k in ("object_loss_weight", "first_object_weight", "motion_loss_weight",
                                                 "follow_loss_weight", "first_move_weight")}
        bad = {k: v for k, v in weights.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ConfigError("data." + ", data.".join(f"{k}={v}" for k, v in bad.items()) + ": loss weights must be > 0")


def kind_weights(cfg: LMDataConfig) -> dict[int, float]:
    unknown = [k for k in cfg.loss_on if k not in KIND_NAMES]
    if unknown:
        raise DataError(f"loss_on: unknown kind {unknown[0]!r} (known: {', '.join(KIND_NAMES)})")
    on = {KIND_NAMES[k] for k in cfg.loss_on}
    return {k: (0.0 if k not in on else (cfg.visual_loss_weight if k == VISUAL else 1.0)) for k in KIND_NAMES.values()}


def to_document(ids: list[int], kinds: list[int], weights_by_kind: dict[int, float]) -> Document:
    return Document(list(ids), [weights_by_kind[k] for k in kinds], list(kinds))


# --- synthetic ---------------------------------------------------------------------------------------------


class SyntheticSource:
    """Endless random code documents: prompt words -> a clip whose codes come from the words' palettes."""

    def __init__(self, src: SourceConfig, vocab: UnifiedVocab, eos_id: int, seed: int,
                 weights_by_kind: dict[int, float], blueprint: bool = True):
        self.src, self.vocab, self.eos, self.wk, self.blueprint = src, vocab, eos_id, weights_by_kind, blueprint
        self.rng = np.random.default_rng(seed)
        word_rng = np.random.default_rng(1234)
        text_ids = np.arange(3, max(4, vocab.offset))
        self.word_ids = word_rng.choice(text_ids, size=(src.words, 2), replace=len(text_ids) < 2 * src.words)
        self.palettes = word_rng.integers(0, 2**vocab.spec.codebook_bits, size=(src.words, 4))

    def next(self) -> Document:
        src, vocab, rng = self.src, self.vocab, self.rng
        words = rng.integers(0, src.words, size=src.prompt_words)
        ids = [int(x) for w in words for x in self.word_ids[w]]
        kinds = [PROMPT] * len(ids)
        t, h, w = (int(x) for x in src.shapes[rng.integers(len(src.shapes))])
        palette = self.palettes[words].reshape(-1)
        fine = palette[rng.integers(0, len(palette), size=(t, h, w))]
        bp = fine[:, ::2, ::2][:, : (h + 1) // 2, : (w + 1) // 2] if self.blueprint else None
        bids = _encode_block(vocab, VisualBlock((t, h, w), fine=fine, blueprint=bp))
        ids += bids + [self.eos]
        kinds += [VISUAL if vocab.visual_offset <= b < vocab.end else STRUCTURE for b in bids]
        kinds += [STRUCTURE]
        return to_document(ids, kinds, self.wk)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def synthetic_documents(src: SourceConfig, vocab: UnifiedVocab, eos_id: int, seed: int,
                        weights_by_kind: dict[int, float], blueprint: bool = True) -> Iterator[Document]:
    source = SyntheticSource(src, vocab, eos_id, seed, weights_by_kind, blueprint)
    while True:
        yield source.next()


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


def clip_size_of_sources(cfg: LMDataConfig) -> dict | None:
    """{"frames", "height", "width"} of the video clips the shard sources were built at (their manifest.json
    `settings`), when every shard folder of clips agrees; None when any differs or says nothing (the model then
    keeps the 17x128x128 default). Folders of JSONL records only (text, chat answers) are not asked, and image
    folders (1 frame) at the clips' height and width do not outvote the clips.
    Recorded as vidgpt.json `default_clip`: what `generate` draws unless told."""
    sizes = set()
    for src in cfg.sources:
        if src.kind != "shards":
            continue
        for p in src.paths:
            top = Path(p) / "manifest.json"
            # one build's folder, or a folder of several builds (one manifest each, e.g. parallel builders' s1, s2...)
            manifests = [top] if top.is_file() else sorted(Path(p).rglob("manifest.json")) if Path(p).is_dir() else []
            if not manifests:
                if Path(p).is_dir() and not any(Path(p).rglob("*.parquet")):
                    continue  # a folder of text / chat records (JSONL): no clips, no say in the clip size
                return None
            for manifest in manifests:
                try:
                    settings = json.loads(manifest.read_text()).get("settings") or {}
                    frames = int(settings["frames"])
                    if settings.get("images") and not any(settings.get(k) for k in ("num", "edits", "continuations")):
                        frames = 1  # images only: `frames` is build-lm's default, no clip of that length is in there
                    sizes.add((frames, int(settings["height"]), int(settings["width"])))
                except (ValueError, KeyError, TypeError):
                    return None
    videos = {sz for sz in sizes if sz[0] > 1}
    if videos and all(sz[1:] in {v[1:] for v in videos} for sz in sizes - videos):
        sizes = videos  # images at the clips' height and width are 1-frame clips of the same model: the clips decide
    if len(sizes) != 1:
        return None
    frames, height, width = sizes.pop()
    return {"frames": frames, "height": height, "width": width}


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


def _latent_mask(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """A flat object mask as its [t, h, w] latent; DataError when the sizes differ."""
    if mask.size != int(np.prod(shape)):
        raise DataError(f"object mask has {mask.size} entries for a {'x'.join(map(str, shape))} latent")
    return mask.reshape(shape)


def changed_cells(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """Flat bool: cells of latent frames >= 1 whose object mask differs from the previous latent frame's."""
    m = _latent_mask(mask, shape)
    out = np.zeros_like(m)
    out[1:] = m[1:] != m[:-1]
    return out.reshape(-1)


def first_move_cells(mask: np.ndarray, shape: tuple) -> np.ndarray:
    """Flat bool over a [t, h, w] latent: the cells of latent frame 1 within one cell (8-neighbourhood) of the
    object's frame-0 cells, in raster order up to and including the first cell whose object mask changed; none when
    frame 1 does not change near the object (or there is no frame 1). Before that cell, what is drawn so far of the
    frame is the same for every direction: these positions decide the move."""
    m = _latent_mask(mask, shape)
    out = np.zeros_like(m)
    if m.shape[0] < 2 or not m[0].any():
        return out.reshape(-1)
    near = grow_cells(m[0])
    h, w = near.shape
    changed = ((m[1] != m[0]) & near).reshape(-1)
    if not changed.any():
        return out.reshape(-1)
    first = int(np.flatnonzero(changed)[0])
    frame1 = near.reshape(-1).copy()
    frame1[first + 1:] = False
    out[1] = frame1.reshape(h, w)
    return out.reshape(-1)


def blueprint_moved_fine(blueprint: np.ndarray, fine_shape: tuple) -> np.ndarray:
    """bool [t, h, w] over the fine grid: the cells under blueprint cells [t, h/2, w/2] whose code differs from the
    same cell's in latent frame 0 (latent frame 0 never); what `tools/fine_follow_probe.py` calls moved."""
    bp = np.asarray(blueprint)
    t, h, w = (int(x) for x in fine_shape)
    if bp.ndim != 3 or bp.shape[0] != t or 2 * bp.shape[1] < h or 2 * bp.shape[2] < w:
        raise DataError(f"a {'x'.join(map(str, bp.shape))} blueprint does not cover a {t}x{h}x{w} fine section")
    return moved_fine_mask(bp, fine_shape)


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
        self._warned_no_mask = False

    def _block(self, codes, shape, bp_codes=None, where="record") -> VisualBlock:
        if shape is None or codes is None:
            raise DataError(f"{where}: code record without codes/shape")
        shape = tuple(int(x) for x in shape)
        fine = np.asarray(codes, dtype=np.int64).reshape(shape)
        bp = None
        if self.cfg.blueprint and bp_codes is not None:
            bp = np.asarray(bp_codes, dtype=np.int64).reshape(blueprint_shape(shape))
        return VisualBlock(shape, fine=fine, blueprint=bp)

    def _weight_objects(self, doc: Document, rec: dict, target: VisualBlock, where: str) -> None:
        """Multiply the weights of the target's object codes by object_loss_weight, the first
        first_object_codes of them by first_object_weight too, and the codes whose cell changed between object and
        background since the previous latent frame by motion_loss_weight, and the blueprint's `first_move_cells` by
        first_move_weight (in place); nothing when all are off."""
        c = self.cfg
        if (c.object_loss_weight == 1.0 and c.motion_loss_weight == 1.0 and c.first_move_weight == 1.0
                and not (c.first_object_codes and c.first_object_weight != 1.0)):
            return
        parts, shapes = [], []
        if target.blueprint is not None:
            parts.append(rec.get("blueprint_object_mask"))
            shapes.append(tuple(target.blueprint.shape))
        if target.fine is not None:
            parts.append(rec.get("object_mask"))
            shapes.append(tuple(target.fine.shape))
        if any(p is None for p in parts):
            if not self._warned_no_mask:
                self._warned_no_mask = True
                warnings.warn(f"data.object_loss_weight: {where} has no object mask (shards built before masks, or "
                              "real clips); its codes keep weight 1", stacklevel=2)
            return
        mask = np.concatenate([np.asarray(p, dtype=bool) for p in parts])
        visual = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
        if len(visual) != len(mask):
            raise DataError(f"{where}: object mask has {len(mask)} entries for {len(visual)} video codes")
        w = self.cfg.object_loss_weight
        where_objects = np.asarray(visual)[mask].tolist()
        for i in where_objects:
            doc.weights[i] *= w
        for i in where_objects[: max(0, self.cfg.first_object_codes)]:
            doc.weights[i] *= self.cfg.first_object_weight
        if c.motion_loss_weight != 1.0:
            changed = np.concatenate([changed_cells(np.asarray(p, dtype=bool), s) for p, s in zip(parts, shapes)])
            for i in np.asarray(visual)[changed].tolist():
                doc.weights[i] *= c.motion_loss_weight
        if c.first_move_weight != 1.0 and target.blueprint is not None:
            first = first_move_cells(np.asarray(parts[0], dtype=bool), shapes[0])
            for i in np.asarray(visual)[: first.size][first].tolist():
                doc.weights[i] *= c.first_move_weight

    def _weight_following(self, doc: Document, target: VisualBlock, where: str) -> None:
        """Multiply the weights of the target's fine codes under moved blueprint cells (`blueprint_moved_fine`) by
        follow_loss_weight (in place); nothing when it is 1 or the target lacks either section."""
        w = self.cfg.follow_loss_weight
        if w == 1.0 or target.blueprint is None or target.fine is None:
            return
        moved = blueprint_moved_fine(target.blueprint, target.fine.shape).reshape(-1)
        moved = np.repeat(moved, self.vocab.spec.subtokens)  # a code's sub-tokens share its weight
        visual = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
        if len(visual) < moved.size:
            raise DataError(f"{where}: {len(visual)} video tokens for a fine section of {moved.size}")
        fine_positions = np.asarray(visual[len(visual) - moved.size:])  # the target's fine section ends the document
        for i in fine_positions[moved].tolist():
            doc.weights[i] *= w

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
            else:  # text to video, or to an image (a 1-frame video: the same options apply)
                cfg = self.cfg
                if cfg.prompt_dropout > 0 and rng.random() < cfg.prompt_dropout:
                    caption = ""
                if cfg.blueprint_only > 0 and target.blueprint is not None and rng.random() < cfg.blueprint_only:
                    target = VisualBlock(target.shape, fine=None, blueprint=target.blueprint)
                sample = L.image(caption, target) if target.shape[0] == 1 else L.text_to_video(caption, target)
            f = self.layout.format(sample)
            doc = to_document(f.input_ids, f.kinds, self.wk)
            self._weight_objects(doc, rec, target, where)
            self._weight_following(doc, target, where)
            return doc
        if rec.get("messages"):  # chat turns of text (vidgpt.data.chat_text): loss on the assistant's answers
            from ..data.chat_text import chat_sample

            if not self.cfg.chat:
                raise DataError(f"{where}: chat records (`messages`) need data.chat: true")
            f = self.layout.format(chat_sample(rec["messages"], where))
            return to_document(f.input_ids, f.kinds, self.wk)
        if rec.get("text"):
            ids = list(self.tok(rec["text"], add_special_tokens=False)["input_ids"])
            if self.eos is not None:
                ids.append(self.eos)
            return to_document(ids, [TEXT] * len(ids), self.wk)
        return None


UNIT_RECORDS = 256  # records per unit of an in-memory (JSONL / text) source


@dataclass
class Unit:
    """A slice of a record source read at once: a Parquet row group, or records [start, start+count) in memory."""

    index: int  # position among all units of the source
    offset: int  # global index of its first record (for holdout_every)
    count: int
    file: str | None = None  # Parquet file
    row_group: int = 0
    start: int = 0  # in-memory records


class RecordTable:
    """The units of one shards/text source, from Parquet footers (no data read) or in-memory records."""

    def __init__(self, src: SourceConfig):
        self.memory: list[dict] | None = None
        self.units: list[Unit] = []
        if src.kind == "text" and all(Path(p).suffix in TEXT_EXTS for p in src.paths if Path(p).is_file()):
            files = list_files(src.paths, TEXT_EXTS)
            self.memory = [{"text": t} for t in text_file_documents(files)]
        else:
            files = list_files(src.paths, RECORD_EXTS)
            kinds = {f.suffix for f in files}
            if len(kinds) > 1:
                raise DataError(f"{files[0].parent}: mixed file types {sorted(kinds)} in one source; use one source per type")
            if files[0].suffix != ".parquet":
                self.memory = list(load_records(files, streaming=False))
        self.where = str(files[0].parent)
        if self.memory is not None:
            n = len(self.memory)
            self.units = [Unit(i, a, min(UNIT_RECORDS, n - a), start=a) for i, a in enumerate(range(0, n, UNIT_RECORDS))]
            return
        import pyarrow.parquet as pq

        offset = 0
        for f in files:
            try:
                meta = pq.ParquetFile(f).metadata
            except Exception as e:
                raise DataError(f"{f}: not a readable Parquet file ({str(e).splitlines()[0]})") from e
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if n:
                    self.units.append(Unit(len(self.units), offset, n, file=str(f), row_group=g))
                    offset += n
        self._files: dict[str, object] = {}

    def read(self, unit: Unit) -> list[dict]:
        if self.memory is not None:
            return self.memory[unit.start : unit.start + unit.count]
        import pyarrow.parquet as pq

        pf = self._files.get(unit.file)
        if pf is None:
            pf = self._files[unit.file] = pq.ParquetFile(unit.file)
        try:
            return pf.read_row_group(unit.row_group).to_pylist()
        except Exception as e:
            raise DataError(f"{unit.file}: cannot read row group {unit.row_group} ({str(e).splitlines()[0]})") from e


class RecordSource:
    """Endless documents of one split from stream `stream` of `n_streams` of a shards/text source (resumable)."""

    def __init__(self, src: SourceConfig, fmt: "RecordFormatter", seed: int, split: str, holdout_every: int,
                 stream: int = 0, n_streams: int = 1, table: RecordTable | None = None):
        self.src, self.fmt, self.seed, self.split, self.holdout = src, fmt, seed, split, holdout_every
        self.table = table or RecordTable(src)
        units = self.table.units
        self.stride = n_streams if len(units) < n_streams else 1  # too few units: every N-th record instead
        self.stream, self.n_streams = stream, n_streams
        self.units = units if self.stride > 1 else units[stream::n_streams]
        self.rng = np.random.default_rng(seed)
        self.epoch = self.pos = self.rec = self.made = 0
        self._cache: tuple[tuple[int, int], list[dict], np.ndarray] | None = None
        self._order: tuple[int, np.ndarray] | None = None

    def _keep(self, i: int) -> bool:
        held = self.holdout > 0 and i % self.holdout == 0
        if held != (self.split == "eval"):
            return False
        k = i // self.holdout if held else i  # held-out records are multiples of holdout_every: stride over them
        return self.stride == 1 or k % self.stride == self.stream

    def _unit_order(self) -> np.ndarray:
        if self._order is None or self._order[0] != self.epoch:  # computed once per epoch
            n = len(self.units)
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.split == "train" else np.arange(n)
            self._order = (self.epoch, order)
        return self._order[1]

    def _records(self, unit: Unit) -> tuple[list[dict], np.ndarray]:
        key = (self.epoch, unit.index)
        if self._cache is None or self._cache[0] != key:
            recs = self.table.read(unit)
            order = (np.random.default_rng([self.seed, self.epoch, unit.index]).permutation(len(recs))
                     if self.split == "train" else np.arange(len(recs)))
            self._cache = (key, recs, order)
        return self._cache[1], self._cache[2]

    def next(self) -> Document:
        while True:
            if self.pos >= len(self.units):
                if self.made == 0:
                    hint = (" (a small source on several streams: a lower data.holdout_every gives each stream some)"
                            if self.split == "eval" and self.n_streams > 1 else "")
                    raise DataError(f"{self.src.paths}: no usable {self.split} records for data stream {self.stream} "
                                    f"of {self.n_streams} (holdout_every={self.holdout}){hint}")
                self.epoch, self.pos, self.rec, self.made = self.epoch + 1, 0, 0, 0
            unit = self.units[int(self._unit_order()[self.pos])]
            recs, order = self._records(unit)
            while self.rec < len(recs):
                j = int(order[self.rec])
                self.rec += 1
                i = unit.offset + j
                if not self._keep(i):
                    continue
                doc = self.fmt(recs[j], self.rng, where=f"{self.table.where} record {i}")
                if doc is not None:
                    self.made += 1
                    return doc
            self.pos, self.rec = self.pos + 1, 0

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "rec": self.rec, "made": self.made,
                "rng": self.rng.bit_generator.state}

    def load(self, state: dict) -> None:
        self.epoch, self.pos, self.rec, self.made = (int(state[k]) for k in ("epoch", "pos", "rec", "made"))
        self.rng.bit_generator.state = state["rng"]


def record_documents(src: SourceConfig, fmt: "RecordFormatter", seed: int, split: str, holdout_every: int,
                     text_tokenizer=None) -> Iterator[Document]:
    """Endless documents from a shards/text source, one split ('train' or 'eval')."""
    source = RecordSource(src, fmt, seed, split, holdout_every)
    while True:
        yield source.next()


# --- the mixture ----------------------------------------------------------------------------------------------------


def _source_seed(seed: int, k: int, split: str, stream: int) -> int:
    return seed * 1000 + k + (500 if split == "eval" else 0) + 100_003 * stream


class DocumentStream:
    """One data stream: its sources (each on its slice), the weighted mixture, resumable."""

    def __init__(self, cfg: LMDataConfig, vocab: UnifiedVocab, text_tokenizer, seed: int, split: str = "train",
                 eos_id: int | None = None, stream: int = 0, n_streams: int = 1, tables: dict | None = None):
        if not cfg.sources:
            raise DataError("data.sources is empty")
        wk = kind_weights(cfg)
        if eos_id is None:
            eos_id = getattr(text_tokenizer, "eos_token_id", None)
        if eos_id is None:
            eos_id = 2
        fmt = None
        tables = {} if tables is None else tables
        self.sources: list = []
        for k, src in enumerate(cfg.sources):
            s = _source_seed(seed, k, split, stream)
            if src.kind == "synthetic":
                self.sources.append(SyntheticSource(src, vocab, eos_id, s, wk, cfg.blueprint))
            elif src.kind in ("shards", "text"):
                if fmt is None:
                    fmt = RecordFormatter(vocab, text_tokenizer, cfg)
                if k not in tables:
                    tables[k] = RecordTable(src)
                self.sources.append(RecordSource(src, fmt, s, split, cfg.holdout_every, stream, n_streams, tables[k]))
            else:
                raise DataError(f"data source {k}: unknown kind {src.kind!r} (synthetic, shards, text)")
        w = np.array([max(0.0, s.weight) for s in cfg.sources], dtype=np.float64)
        if w.sum() <= 0:
            raise DataError("data.sources: mixture weights sum to 0")
        self.p = w / w.sum()
        self.rng = np.random.default_rng(seed + (7 if split == "eval" else 0) + 100_003 * stream)

    def next(self) -> Document:
        return self.sources[int(self.rng.choice(len(self.sources), p=self.p))].next()

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "sources": [s.state() for s in self.sources]}

    def load(self, state: dict) -> None:
        if len(state["sources"]) != len(self.sources):
            raise DataError(f"data state has {len(state['sources'])} sources, the config {len(self.sources)}")
        self.rng.bit_generator.state = state["rng"]
        for src, st in zip(self.sources, state["sources"]):
            src.load(st)


def mixed_documents(cfg: LMDataConfig, vocab: UnifiedVocab, text_tokenizer, seed: int, split: str = "train",
                    eos_id: int | None = None) -> Iterator[Document]:
    """Endless documents drawn from the sources by weight (deterministic for a seed and split; one stream)."""
    stream = DocumentStream(cfg, vocab, text_tokenizer, seed, split, eos_id)
    while True:
        yield stream.next()


def _b64(values, dtype) -> str:
    import base64

    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype) -> list:
    import base64

    return np.frombuffer(base64.b64decode(text), dtype=dtype).tolist()


def _row_to_lists(row: dict) -> dict:
    """A packed row as compact JSON (base64 of int32 / float32 arrays)."""
    return {k: _b64(v.numpy(), np.float32 if k == "weights" else np.int32) for k, v in row.items()}


def _row_from_lists(row: dict) -> dict:
    import torch

    return {k: torch.tensor(_unb64(v, np.float32 if k == "weights" else np.int32),
                            dtype=torch.float32 if k == "weights" else torch.long) for k, v in row.items()}


def _open_row_to_lists(row: OpenRow) -> dict:
    return {"ids": _b64(row.ids, np.int32), "weights": _b64(row.w, np.float32), "lengths": list(row.lengths)}


def _open_row_from_lists(part: dict) -> OpenRow:
    return OpenRow([int(x) for x in _unb64(part["ids"], np.int32)], _unb64(part["weights"], np.float32),
                   [int(x) for x in part["lengths"]])


class PackedStream:
    """A DocumentStream packed into rows; the state holds the packer's partial row(s) and rows not yet taken.

    Greedy packing saves its one partial row as `partial` (the format of older states); best fit saves its open
    rows, oldest first, as `open`."""

    def __init__(self, docs: DocumentStream, seq_len: int, pad_id: int, long_docs: str, stats: PackStats | None,
                 packing: str = "greedy"):
        self.docs = docs
        self.packing = packing
        self.packer = make_packer(packing, seq_len, pad_id, long_docs)
        if stats is not None:
            self.packer.stats = stats
        self.pending: deque = deque()
        self.rows = 0

    def next_row(self) -> dict:
        while not self.pending:
            self.pending.extend(self.packer.add(self.docs.next()))
        self.rows += 1
        return self.pending.popleft()

    def state(self) -> dict:
        out = {"docs": self.docs.state(), "rows": self.rows, "pending": [_row_to_lists(r) for r in self.pending]}
        open_rows = self.packer.open_rows_state()  # ids, weights and document lengths so far
        if self.packing == "greedy":
            out["partial"] = _open_row_to_lists(open_rows[0] if open_rows else OpenRow())
        else:
            out["packing"] = self.packing
            out["open"] = [_open_row_to_lists(r) for r in open_rows]
        return out

    def load(self, state: dict) -> None:
        saved = state.get("packing", "greedy")
        # greedy -> best_fit is allowed (its one partial row becomes an open row: a later piece can cut the padding);
        # best_fit -> greedy is not (several open rows have no place in one)
        if saved != self.packing and not (saved == "greedy" and self.packing == "best_fit"):
            raise DataError(f"the data state was saved with data.packing={saved}, the config has {self.packing}: "
                            "resume with the same packing (only greedy -> best_fit can change on resume)")
        self.docs.load(state["docs"])
        self.rows = int(state["rows"])
        self.pending = deque(_row_from_lists(r) for r in state["pending"])
        parts = state["open"] if "open" in state else [state["partial"]]
        self.packer.load_open_rows([r for r in map(_open_row_from_lists, parts) if len(r)])


def num_streams(cfg: LMDataConfig, world_size: int) -> int:
    n = int(cfg.streams or world_size)
    if n < 1 or n % world_size:
        raise DataError(f"data.streams={cfg.streams}: must be a multiple of the {world_size} processes "
                        "(or 0 for one stream per process)")
    return n


class RowStream:
    """This process's packed rows: global rows rank, rank + world_size, ...; row g from stream g % N."""

    def __init__(self, cfg: LMDataConfig, vocab: UnifiedVocab, text_tokenizer, seq_len: int, seed: int,
                 split: str = "train", pad_id: int = 0, rank: int = 0, world_size: int = 1, skip: int = 0,
                 stats: PackStats | None = None, state: dict | None = None):
        self.n = num_streams(cfg, world_size)
        self.rank, self.world = rank, world_size
        tables: dict = {}
        self.streams = {
            s: PackedStream(DocumentStream(cfg, vocab, text_tokenizer, seed, split, stream=s, n_streams=self.n, tables=tables),
                            seq_len, pad_id, cfg.long_docs, stats, cfg.packing)
            for s in range(rank, self.n, world_size)
        }
        self.g = rank  # the next global row this process takes
        if state is not None and state.get("streams_total") == self.n and int(state.get("rows", -1)) == skip:
            for s, ps in self.streams.items():
                ps.load(state["streams"][str(s)])
            self.g = skip + rank
            taken = state.get("taken")  # rows each process took (they differ under train.step_tokens)
            if isinstance(taken, dict) and len(taken) == world_size and str(rank) in taken:  # the same processes again
                self.g = rank + int(taken[str(rank)]) * world_size
        elif skip:  # no usable saved position: replay this process's own streams up to `skip` global rows
            for g in range(skip):
                if g % self.n in self.streams:
                    self.streams[g % self.n].next_row()
            self.g = skip + rank

    def __iter__(self) -> "RowStream":
        return self

    def __next__(self) -> dict:
        row = self.streams[self.g % self.n].next_row()
        self.g += self.world
        return row

    def state_dict(self) -> dict:
        """This process's part of the data position (RowStream.merge joins the parts of all processes)."""
        return {"streams_total": self.n, "rows": self.g - self.rank, "rank": self.rank,
                "taken": (self.g - self.rank) // self.world,
                "streams": {str(s): ps.state() for s, ps in self.streams.items()}}

    @staticmethod
    def merge(parts: list[dict]) -> dict:
        """All processes' parts as one data position: `rows` is the rows taken over all processes (what the trainer
        counts), `taken` each process's own count (equal unless a step's rows were cut by a token budget)."""
        taken = {str(p["rank"]): int(p["taken"]) for p in parts}
        if len(taken) != len(parts):
            raise DataError(f"data position: {len(parts)} parts from {len(taken)} distinct processes")
        out = {"streams_total": parts[0]["streams_total"], "rows": sum(taken.values()), "taken": taken, "streams": {}}
        for p in parts:
            out["streams"].update(p["streams"])
        return out


def packed_rows(cfg: LMDataConfig, vocab: UnifiedVocab, text_tokenizer, seq_len: int, seed: int,
                split: str = "train", pad_id: int = 0, rank: int = 0, world_size: int = 1, skip: int = 0,
                stats: PackStats | None = None, state: dict | None = None) -> RowStream:
    """Packed rows for this process after `skip` global rows (from the saved `state` when it matches)."""
    return RowStream(cfg, vocab, text_tokenizer, seq_len, seed, split, pad_id, rank, world_size, skip, stats, state)


def write_records_jsonl(path: str | Path, records: list[dict]) -> Path:
    """Small helper for tests and tools: write records as JSONL."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    return p
