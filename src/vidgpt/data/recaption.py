"""Captions rewritten by a language model: expand short prompts, paraphrase captions.

    model, tok, model_id = load_rewriter("smollm2-135m")
    expand_prompt(["a red ball bounces"], model, tok)          # -> ["A small red ball bounces ..."]
    res = rewrite_texts(captions, model, tok, mode="paraphrase", num=2, cache=RewriteCache("cache/"))

Training captions and user prompts go through the same `expand_prompt`, so what the video LM
sees at inference looks like what it was trained on. Generation is batched with left padding,
greedy (temperature 0) or sampled with a seed. Every answer passes `clean_output`, a guard
against garbage (empty, too long, the instruction repeated back, chat markers); a rejected answer
falls back to the original text and is counted. `RewriteCache` stores answers on disk keyed by a
hash of (model id, mode, text, settings) so a rerun makes no model calls.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import DataError, ModelError
from ..utils import progress_wanted

INSTRUCTIONS = {
    # `expand`: a short user prompt -> the kind of detailed caption the training data has.
    "expand": (
        "Rewrite this short description of a video as one detailed caption of one to three sentences. "
        "Name every object with its colour, size and shape, say how each one moves, and describe the "
        "background and the camera. Keep everything the description says and add nothing that contradicts it. "
        "Reply with the caption only."
    ),
    # `paraphrase`: the same content in other words (more caption variety for training).
    "paraphrase": (
        "Paraphrase this video caption in different words. Keep every detail: the objects, their colours, "
        "shapes and sizes, how they move, the background and the camera. Reply with the paraphrase only."
    ),
}
"""The instruction given to the model for each mode; the text to rewrite follows it."""

CHAT_MARKERS = ("<|", "|>", "<s>", "</s>", "[INST]", "[/INST]", "<start_of_turn>", "<end_of_turn>", "###")
ROLE_LINE = re.compile(r"^\s*(system|user|assistant)\s*[:\n]", re.IGNORECASE | re.MULTILINE)
LEADING_LABEL = re.compile(r"^\s*(caption|paraphrase|rewritten caption|detailed caption|description)\s*:\s*", re.IGNORECASE)
MODES = tuple(INSTRUCTIONS)


@dataclass
class RewriteSettings:
    """Generation settings (all of them enter the cache key)."""

    mode: str = "expand"
    num: int = 1  # rewrites per text (sampling only; greedy gives one)
    max_new_tokens: int = 96
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    seed: int = 0
    max_words: int = 120  # longer answers are garbage

    def __post_init__(self) -> None:
        if self.mode not in INSTRUCTIONS:
            raise DataError(f"recaption mode {self.mode!r} unknown (known: {', '.join(MODES)})")
        if self.num < 1:
            raise DataError(f"--num must be >= 1, got {self.num}")
        if self.temperature < 0:
            raise DataError(f"--temperature must be >= 0, got {self.temperature}")

    @property
    def sample(self) -> bool:
        return self.temperature > 0

    def key_fields(self) -> dict:
        return {"instruction": INSTRUCTIONS[self.mode], "num": self.num if self.sample else 1,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p if self.sample else None, "seed": self.seed if self.sample else None,
                "max_words": self.max_words}


@dataclass
class RewriteResult:
    """texts[i]: the accepted rewrites of input i (may be empty when all fell back)."""

    texts: list[list[str]]
    fallbacks: int = 0  # answers rejected by the guard
    model_calls: int = 0  # generate() calls made (0 when everything came from the cache)
    cached: int = 0  # inputs answered from the cache


# --- the guard ---------------------------------------------------------------------------------


MIN_OVERLAP = {"expand": 0.5, "paraphrase": 0.3}
"""Share of the original's content words an answer must keep (an answer about something else is garbage)."""

STOPWORDS = frozenset("a an the and or of in on at to with over under while its it is are then from by for as this that".split())


def content_words(text: str) -> set[str]:
    return {w for w in _norm(text).split() if len(w) > 2 and w not in STOPWORDS}


def clean_output(text: str, mode: str = "expand", max_words: int = 120, source: str | None = None) -> str | None:
    """The model's answer tidied up, or None when it is garbage.

    Garbage: empty, longer than max_words, containing chat markers or role lines, repeating a
    piece of the instruction, or (when `source`, the text being rewritten, is given) keeping less
    than MIN_OVERLAP[mode] of its content words. Tidying: first paragraph only, a leading
    "Caption:" label, surrounding quotes and repeated sentences removed.
    """
    if any(m in text for m in CHAT_MARKERS) or ROLE_LINE.search(text):
        return None
    text = text.strip().split("\n\n")[0].strip()
    text = LEADING_LABEL.sub("", text).strip().strip('"').strip("'").strip()
    text = _drop_repeated_sentences(" ".join(text.split()))
    if not text or not any(c.isalpha() for c in text):
        return None
    if len(text.split()) > max_words:
        return None
    instruction = INSTRUCTIONS[mode].lower()
    low = text.lower()
    # any 6-word run of the instruction showing up in the answer means it was echoed
    words = instruction.split()
    for i in range(len(words) - 5):
        if " ".join(words[i : i + 6]) in low:
            return None
    if "reply with the" in low:
        return None
    if source is not None:
        want = content_words(source)
        if want and len(want & content_words(text)) < MIN_OVERLAP[mode] * len(want):
            return None
    return text


def _drop_repeated_sentences(text: str) -> str:
    """Small models loop: keep each sentence once."""
    out, seen = [], set()
    for sent in re.split(r"(?<=[.!?])\s+", text):
        norm = sent.lower().strip(" .!?")
        if norm and norm not in seen:
            seen.add(norm)
            out.append(sent)
    return " ".join(out)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# --- the cache ---------------------------------------------------------------------------------


class RewriteCache:
    """Answers on disk: DIR/recaption-cache.jsonl, one {"key", "outputs", "fallbacks"} a line.

    Appends as it goes, so an interrupted run keeps what it generated; a torn last line is ignored.
    """

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / "recaption-cache.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    e = json.loads(line)
                    self.entries[e["key"]] = e
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash

    @staticmethod
    def key(model_id: str, mode: str, text: str, settings: dict) -> str:
        blob = json.dumps([model_id, mode, text, settings], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, outputs: list[str], fallbacks: int) -> None:
        entry = {"key": key, "outputs": outputs, "fallbacks": fallbacks}
        self.entries[key] = entry
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


# --- generation --------------------------------------------------------------------------------


def build_prompt(text: str, mode: str, tokenizer) -> str:
    """The model input for one text: the instruction and the text, in the chat template if any."""
    label = "Description" if mode == "expand" else "Caption"
    content = f"{INSTRUCTIONS[mode]}\n\n{label}: {text.strip()}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    return f"{content}\n{'Caption' if mode == 'expand' else 'Paraphrase'}:"


def _decode_answer(tokenizer, ids) -> str:
    """Generated ids -> text, cut at the first end-of-sequence; other special tokens are kept
    (so the guard sees chat markers the model made up)."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for stop in {tokenizer.eos_token, tokenizer.pad_token} - {None}:
        text = text.split(stop)[0]
    return text


def _generate(model, tokenizer, prompts: list[str], s: RewriteSettings) -> list[list[str]]:
    """One generate() call for a batch: returns the raw answers, `n` per prompt."""
    import torch

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True, max_length=1024)
    finally:
        tokenizer.padding_side = old_side
    device = getattr(model, "device", torch.device("cpu"))
    enc = {k: v.to(device) for k, v in enc.items()}
    n = s.num if s.sample else 1
    kw = dict(max_new_tokens=s.max_new_tokens, do_sample=s.sample, num_return_sequences=n,
              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if s.sample:
        kw.update(temperature=s.temperature, top_p=s.top_p)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(s.seed)
        with torch.inference_mode():
            out = model.generate(**enc, **kw)
    new = out[:, enc["input_ids"].shape[1] :].cpu()
    answers = [_decode_answer(tokenizer, row) for row in new]
    return [answers[i * n : (i + 1) * n] for i in range(len(prompts))]


def rewrite_texts(
    texts: Sequence[str],
    model,
    tokenizer,
    settings: RewriteSettings | None = None,
    *,
    model_id: str = "model",
    batch_size: int = 16,
    cache: RewriteCache | None = None,
    progress: bool = False,
) -> RewriteResult:
    """Rewrite each text (batched, cached); texts[i] -> up to `num` distinct accepted rewrites.

    Rejected answers (see clean_output) are dropped and counted in `fallbacks`; the caller keeps
    the original text. Answers equal to the input are dropped silently.
    """
    from tqdm.auto import tqdm

    s = settings or RewriteSettings()
    if batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {batch_size}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    key_fields = s.key_fields()
    keys = [RewriteCache.key(model_id, s.mode, t, key_fields) for t in texts]
    result = RewriteResult([[] for _ in texts])
    todo: dict[str, list[int]] = {}  # unique texts still to generate -> their positions
    for i, (t, k) in enumerate(zip(texts, keys)):
        hit = cache.get(k) if cache is not None else None
        if hit is not None:
            result.texts[i] = list(hit["outputs"])
            result.fallbacks += hit["fallbacks"]
            result.cached += 1
        else:
            todo.setdefault(k, []).append(i)
    order = list(todo)
    bar = tqdm(total=len(order), desc=f"recaption ({s.mode})", unit="text", disable=not progress_wanted(progress))
    for b in range(0, len(order), batch_size):
        batch_keys = order[b : b + batch_size]
        batch_texts = [texts[todo[k][0]] for k in batch_keys]
        answers = _generate(model, tokenizer, [build_prompt(t, s.mode, tokenizer) for t in batch_texts], s)
        result.model_calls += 1
        for k, text, raw in zip(batch_keys, batch_texts, answers):
            kept, bad = [], 0
            for a in raw:
                c = clean_output(a, s.mode, s.max_words, source=text)
                if c is None:
                    bad += 1
                elif _norm(c) != _norm(text) and c not in kept:
                    kept.append(c)
            if cache is not None:
                cache.put(k, kept, bad)
            for i in todo[k]:
                result.texts[i] = list(kept)
                result.fallbacks += bad
        bar.update(len(batch_keys))
    bar.close()
    return result


def expand_prompt(
    prompts: Sequence[str],
    model,
    tokenizer,
    *,
    mode: str = "expand",
    max_new_tokens: int = 96,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    cache: RewriteCache | None = None,
    model_id: str = "model",
) -> list[str]:
    """One detailed caption per prompt, as the training captions were written (see INSTRUCTIONS).

    This is what generation calls on user prompts. Greedy by default; a garbage answer falls back
    to the prompt itself.
    """
    s = RewriteSettings(mode=mode, num=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    res = rewrite_texts(prompts, model, tokenizer, s, model_id=model_id, batch_size=batch_size, cache=cache)
    return [r[0] if r else p for p, r in zip(prompts, res.texts)]


def load_rewriter(name: str | None = "smollm2-135m", device=None, dtype=None):
    """(model, tokenizer, model_id): the embedded SmolLM2 (default), a local HF model dir or a hub id."""
    import torch

    from ..embedded import is_embedded_name, load_embedded_model, load_embedded_tokenizer
    from ..utils import pick_device

    device = pick_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if is_embedded_name(name):
        model, tok, model_id = load_embedded_model(dtype=dtype), load_embedded_tokenizer(), "smollm2-135m"
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_id = str(Path(name).resolve()) if Path(name).is_dir() else str(name)
        try:
            tok = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        except (OSError, ValueError) as e:
            raise ModelError(f"{name}: cannot load a causal LM ({' '.join(str(e).split())[:200]})") from None
    return model.to(device).eval(), tok, model_id


# --- manifests ---------------------------------------------------------------------------------


@dataclass
class ManifestRecaptionStats:
    records: int = 0
    rewritten: int = 0  # records that got at least one new caption
    new_captions: int = 0
    without_caption: int = 0
    result: RewriteResult | None = field(default=None, repr=False)


def recaption_records(records: list[dict], model, tokenizer, settings: RewriteSettings, **kw) -> ManifestRecaptionStats:
    """Add rewrites of each record's caption to its `captions` list (in place)."""
    stats = ManifestRecaptionStats(records=len(records))
    idx, texts = [], []
    for i, r in enumerate(records):
        caps = r.get("captions") if isinstance(r.get("captions"), list) else []
        cap = r.get("caption") or (caps[0] if caps else "")
        if not isinstance(cap, str) or not cap.strip():
            stats.without_caption += 1
            continue
        idx.append(i)
        texts.append(cap)
    res = rewrite_texts(texts, model, tokenizer, settings, **kw)
    for i, text, new in zip(idx, texts, res.texts):
        r = records[i]
        caps = [c for c in (r.get("captions") or []) if isinstance(c, str)]
        if text not in caps:
            caps.insert(0, text)
        added = [c for c in new if c not in caps]
        r["captions"] = caps + added
        stats.new_captions += len(added)
        stats.rewritten += bool(added)
    stats.result = res
    return stats
