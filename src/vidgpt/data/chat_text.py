"""Chat-form text for the LM mixture: questions answered by the base backbone itself (self-distillation).

A model trained only on clip answers stops answering in text: its assistant turn opens with
<|vision_start|> whatever is asked. Chat turns whose answers are the *base* model's own keep that
behaviour without teaching it anything new: questions come from templates and word lists (disjoint
from the model eval's fixed chat questions, `vidgpt.evaluate.TEXT_PROMPTS`), the answers from the
plain backbone (no video rows, no adapter) decoding greedily in its chat template, up to its end of turn.

    questions(300, seed=0)                     # deterministic, the same prefix for any n
    make_chat_text("data/lm9/chat", model, tokenizer, ChatTextConfig(num=300))   # resumable

Records (one JSON object a line in OUT/chat-00000.jsonl)::

    {"index": 17, "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "finished": true}

The LM trainer reads them as a `shards` source (vidgpt.train.lm_data: a `messages` record is formatted
through the layout into the backbone's chat template; the user turn and the template's wrappers are
PROMPT, the answer TEXT and the end of turn STRUCTURE, so the loss is on the answer and its end only).
OUT/.chat_text.json (hidden, so the trainer does not read it) holds the settings; a rerun with a larger
`num` extends the file and gives the records a fresh run to that `num` would.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..layout import Sample, Turn

RECORDS_FILE = "chat-00000.jsonl"
STATE_FILE = ".chat_text.json"

# --- questions ----------------------------------------------------------------------------------------------------

CONCEPTS = ["a volcano", "photosynthesis", "gravity", "a rainbow", "an eclipse", "a glacier", "electricity", "a desert",
            "democracy", "a computer", "the internet", "a vaccine", "an atom", "a planet", "a comet", "friction",
            "evaporation", "a thunderstorm", "an earthquake", "a library", "a museum", "a bridge", "a calendar",
            "a battery", "a magnet", "a telescope", "a microscope", "an orchestra", "a poem", "a recipe", "a map",
            "a compass", "a forest", "a river", "a mountain", "an island", "a cloud", "a tornado", "a fossil",
            "oxygen", "a language", "music", "a budget", "a password", "a website", "a robot", "a star", "the moon"]
TOPICS = ["sleep", "exercise", "recycling", "reading", "clean water", "friendship", "education", "teamwork", "honesty",
          "kindness", "patience", "saving money", "fresh air", "science", "history", "mathematics", "art", "music",
          "breakfast", "good manners", "learning from mistakes", "washing your hands", "walking", "gardening"]
ANIMALS = ["cat", "dog", "horse", "elephant", "penguin", "owl", "bee", "frog", "lion", "rabbit", "dolphin", "eagle",
           "turtle", "squirrel", "wolf", "camel", "giraffe", "butterfly", "snail", "bat", "fox", "cow", "parrot",
           "shark", "ant", "spider", "deer", "koala", "zebra", "tiger", "goat", "duck"]
OBJECTS = ["chair", "umbrella", "bicycle", "kettle", "pencil", "clock", "lamp", "mirror", "key", "backpack", "camera",
           "phone", "window", "candle", "hammer", "spoon", "ladder", "wallet", "guitar", "piano", "fridge", "toothbrush"]
ACTIVITIES = ["bake bread", "plant a tree", "learn a new language", "make tea", "tie a shoelace", "save money",
              "fall asleep faster", "stay focused", "boil an egg", "ride a bicycle", "start a garden", "clean a window",
              "fold a shirt", "read faster", "take a good photo", "make a paper plane", "keep a plant alive",
              "prepare for an exam", "cook rice", "make friends", "stay warm in winter", "pack for a trip",
              "care for a puppy", "organize a desk", "drink more water", "remember names"]
JOBS = ["teacher", "doctor", "farmer", "pilot", "chef", "nurse", "firefighter", "librarian", "carpenter", "scientist",
        "baker", "gardener", "dentist", "architect", "mechanic", "engineer", "artist", "judge", "plumber",
        "photographer", "astronaut", "veterinarian"]
SEASONS = ["spring", "summer", "autumn", "winter"]
PLACES = ["the beach", "a park", "a zoo", "the mountains", "a farm", "a market", "a lake", "a big city", "a village",
          "a campsite", "a library", "a train station"]
ADJECTIVES = ["hot", "tall", "happy", "fast", "early", "loud", "heavy", "bright", "empty", "soft", "ancient", "simple",
              "strong", "wet", "young", "rich", "narrow", "deep", "easy", "polite", "brave", "quiet"]
PAIRS = [("a cat", "a dog"), ("weather", "climate"), ("a lake", "a river"), ("a star", "a planet"),
         ("a city", "a village"), ("fruit", "vegetables"), ("speed", "velocity"), ("a virus", "bacteria"),
         ("rain", "snow"), ("a moth", "a butterfly"), ("a frog", "a toad"), ("a hill", "a mountain"),
         ("a poem", "a story"), ("tea", "coffee"), ("a bike", "a car"), ("a lion", "a tiger")]
NUMBERS = [2, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 20]  # no 7 or 12: the eval asks "What is 12 plus 7?"


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


TEMPLATES: list[tuple[str, list]] = [
    ("What is {0}?", CONCEPTS),
    ("Explain what {0} is in simple words.", CONCEPTS),
    ("Tell me something interesting about {0}.", CONCEPTS),
    ("Why is {0} important?", TOPICS),
    ("Give me a tip about {0}.", TOPICS),
    ("What are the benefits of {0}?", TOPICS),
    ("What does {a0} eat?", ANIMALS),
    ("Where does {a0} live?", ANIMALS),
    ("Describe {a0} briefly.", ANIMALS),
    ("How many legs does {a0} have?", ANIMALS),
    ("Suggest a name for a pet {0}.", ANIMALS),
    ("What is {a0} used for?", OBJECTS),
    ("How does {a0} work?", OBJECTS),
    ("How do I {0}?", ACTIVITIES),
    ("What do I need to {0}?", ACTIVITIES),
    ("What does {a0} do?", JOBS),
    ("What skills does {a0} need?", JOBS),
    ("What is the weather like in {0}?", SEASONS),
    ("What can people do in {0}?", SEASONS),
    ("What can people do at {0}?", PLACES),
    ("What is the opposite of {0}?", ADJECTIVES),
    ("Give me a word that means the same as {0}.", ADJECTIVES),
    ("What is the difference between {0} and {1}?", PAIRS),
    ("What is {0} times {1}?", [(a, b) for a in NUMBERS for b in NUMBERS]),
    ("What is {0} minus {1}?", [(a, b) for a in NUMBERS for b in NUMBERS if a > b]),
]

_STOP_WORDS = {"what", "is", "the", "of", "a", "an", "about"}


def _words(text: str) -> set[str]:
    out = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        w = w.replace("colour", "color")
        out.add(w[:-1] if len(w) > 4 and w.endswith("s") else w)  # plurals: "colours" ~ "colour"
    return out


def eval_overlap(question: str, prompts: Sequence[str] | None = None) -> str | None:
    """Why `question` is too close to one of the eval's fixed chat questions (None when it is not).

    Too close: the same question (case and punctuation aside), or a word of an eval question other than
    the function words (what, is, the, of, a, an, about): e.g. "ocean", "colours", "plus", "12", "three".
    """
    if prompts is None:
        from ..evaluate import TEXT_PROMPTS as prompts
    q = _words(question)
    for p in prompts:
        if " ".join(re.findall(r"[a-z0-9]+", question.lower())) == " ".join(re.findall(r"[a-z0-9]+", p.lower())):
            return f"it is the eval question {p!r}"
        shared = sorted((q & _words(p)) - _STOP_WORDS)
        if shared:
            return f"it shares {shared[0]!r} with the eval question {p!r}"
    return None


def _fill(template: str, item) -> str:
    args = item if isinstance(item, tuple) else (item,)
    return template.format(*args, a0=_a(str(args[0])))


def question_pool(seed: int = 0) -> list[str]:
    """Every question the templates make, in a seeded order that alternates between templates."""
    rng = np.random.default_rng([seed, 7919])
    per_template = []
    for template, items in TEMPLATES:
        qs = [_fill(template, it) for it in items]
        per_template.append([qs[i] for i in rng.permutation(len(qs))])
    order = rng.permutation(len(per_template))
    pool: list[str] = []
    for k in range(max(len(x) for x in per_template)):
        pool += [per_template[t][k] for t in order if k < len(per_template[t])]
    return pool


def questions(n: int, seed: int = 0) -> list[str]:
    """The first n questions of the pool for `seed` (the same prefix for every n)."""
    pool = question_pool(seed)
    if n > len(pool):
        raise DataError(f"{n} questions asked; the templates make {len(pool)}")
    return pool[:n]


# --- records ------------------------------------------------------------------------------------------------------


def chat_record(index: int, question: str, answer: str, finished: bool = True) -> dict:
    return {"index": int(index), "messages": [{"role": "user", "content": question},
                                              {"role": "assistant", "content": answer}], "finished": bool(finished)}


def chat_sample(messages, where: str = "record") -> Sample:
    """A `messages` record (user / assistant turns of text, alternating, from user) as a layout Sample."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DataError(f"{where}: `messages` must be a non-empty list of {{role, content}}")
    turns = []
    for k, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        content = m.get("content") if isinstance(m, dict) else None
        want = "user" if k % 2 == 0 else "assistant"
        if role != want or not isinstance(content, str):
            raise DataError(f"{where}: message {k} must be {{role: {want}, content: text}}, got {m!r:.80}")
        turns.append(Turn(role, [content]))
    if turns[-1].role != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's answer")
    return Sample(turns)


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def trim_answer(text: str, min_chars: int = 20) -> str | None:
    """A truncated answer cut after its last full sentence (or line); None when too little is left."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends:
        return None
    cut = text[: ends[-1]].strip()
    return cut if len(cut) >= min_chars else None


# --- answers from the base model ----------------------------------------------------------------------------------


def _prompt_layout(tokenizer):
    """The vidgpt chat layout over `tokenizer` (a minimal visual vocabulary: only text is formatted)."""
    from ..layout import Layout
    from ..vocab import UnifiedVocab, VocabSpec

    return Layout(UnifiedVocab(VocabSpec(1, 1, 1, 1), offset=len(tokenizer)), tokenizer, chat=True)


def answer_batch(model, tokenizer, batch: Sequence[str], max_new_tokens: int = 96, temperature: float = 0.0,
                 generator=None, fast: bool = True, layout=None) -> list[tuple[str, bool]]:
    """(answer, finished) for each question: the model's reply in the chat layout the trainer formats.

    The prompt is exactly the ids the trainer puts before an answer (vidgpt.layout, the backbone's chat
    template); decoding is greedy (temperature 0) or sampled with `generator`, over the text vocabulary,
    up to the template's end of turn (finished) or max_new_tokens (not finished). All rows decode in one
    batch through vidgpt's fast backend (one read of the weights serves every row) where the model is
    Llama-shaped, else the plain transformers path.
    """
    import torch

    from ..generate.decoding import left_pad
    from ..generate.fast_decode import make_backend

    layout = layout or _prompt_layout(tokenizer)
    prompts = [layout.prompt_ids(Sample([Turn("user", [q])])) for q in batch]
    eot = layout._ids(layout.wrappers.end_of_turn)
    stops = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    if eot:
        stops.add(int(eot[0]))
    if not stops:
        raise DataError("the tokenizer has no end-of-turn or EOS token to stop answers at")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops)
    V = min(len(tokenizer), int(model.get_output_embeddings().weight.shape[0]))
    ids, mask = left_pad(prompts, pad, next(model.parameters()).device)
    backend = make_backend(model, fast)
    R = len(prompts)
    out: list[list[int]] = [[] for _ in range(R)]
    done = [False] * R
    with torch.inference_mode():
        state = backend.prefill(ids, mask, max_len=ids.shape[1] + max_new_tokens + 1)
        for step in range(max_new_tokens):
            logits = backend.logits(state, 0, V).float()
            if temperature > 0:
                tok = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).view(-1)
            else:
                tok = logits.argmax(-1)
            for r, t in enumerate(tok.tolist()):
                if not done[r]:
                    if t in stops:
                        done[r] = True
                    else:
                        out[r].append(t)
            if all(done) or step + 1 == max_new_tokens:
                break
            feed = torch.tensor([pad if d else t for d, t in zip(done, tok.tolist())], dtype=torch.long)
            state = backend.step(feed.to(ids.device))
    return [(tokenizer.decode(o, skip_special_tokens=True).strip(), d) for o, d in zip(out, done)]


# --- the resumable writer -----------------------------------------------------------------------------------------


@dataclass
class ChatTextConfig:
    num: int = 300  # question/answer pairs in the file when done
    seed: int = 0  # the question order (and the sampling noise when temperature > 0)
    max_new_tokens: int = 96
    temperature: float = 0.0  # 0 = greedy
    batch_size: int = 8  # questions decoded together; batches are aligned to index // batch_size, so a
    #                      rerun and a fresh run decode the same batches
    truncated: str = "trim"  # an answer that hits max_new_tokens: trim (to its last full sentence) | keep | drop
    backbone: str = "smollm2-135m"  # recorded in the state file (the caller passes the model itself)

    def check(self) -> None:
        if self.num < 0 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise DataError("chat text: num >= 0, batch_size >= 1 and max_new_tokens >= 1")
        if self.truncated not in ("trim", "keep", "drop"):
            raise DataError(f"chat text: truncated={self.truncated!r} (trim, keep, drop)")


_SETTINGS = ("seed", "max_new_tokens", "temperature", "batch_size", "truncated", "backbone")


def read_records(path: str | Path) -> list[dict]:
    """The complete records of a chat text file (a torn last line from an interrupted run is left out)."""
    p = Path(path)
    if not p.is_file():
        return []
    recs = []
    lines = p.read_text(encoding="utf-8").split("\n")
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError as e:
            if k == len(lines) - 1:  # the torn tail of an interrupted append
                break
            raise DataError(f"{p}: line {k + 1} is not JSON ({e})") from e
    return recs


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_chat_text(out: str | Path, model, tokenizer, cfg: ChatTextConfig | None = None, fast: bool = True,
                   log: Callable[[str], None] | None = None) -> dict:
    """Write (or extend) OUT/chat-00000.jsonl to cfg.num question/answer pairs; returns a summary.

    Questions: `questions(..., cfg.seed)` minus any too close to the eval's fixed ones (none, by the word
    lists; checked anyway). Answers: `answer_batch` on `model`/`tokenizer`, the plain backbone.
    """
    import time

    import torch

    cfg = cfg or ChatTextConfig()
    cfg.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, rec_path = out / STATE_FILE, out / RECORDS_FILE
    settings = {k: getattr(cfg, k) for k in _SETTINGS}
    if state_path.is_file():
        old = json.loads(state_path.read_text())
        for k in _SETTINGS:
            if old.get("settings", {}).get(k) != settings[k]:
                raise DataError(f"{out}: made with {k}={old.get('settings', {}).get(k)!r}, asked {settings[k]!r}; "
                                "use another folder (or the same settings) to extend it")
    recs = read_records(rec_path)
    if rec_path.is_file():  # drop a torn tail line before appending
        _write_atomic(rec_path, "".join(json.dumps(r) + "\n" for r in recs))
    pool = question_pool(cfg.seed)
    for r in recs:
        i = int(r["index"])
        if i >= len(pool) or r["messages"][0]["content"] != pool[i]:
            raise DataError(f"{rec_path}: record {i} does not hold question {i} of seed {cfg.seed}")
    next_index = int(recs[-1]["index"]) + 1 if recs else 0
    kept, dropped, truncated, started = len(recs), 0, 0, time.time()
    new_tokens = 0
    _write_atomic(state_path, json.dumps({"settings": settings, **asdict(cfg)}, indent=1) + "\n")
    layout = _prompt_layout(tokenizer)
    B = cfg.batch_size
    b = next_index // B
    while kept < cfg.num:
        lo = b * B
        if lo >= len(pool):
            raise DataError(f"the templates make {len(pool)} questions; {kept} pairs kept, {cfg.num} asked")
        batch = pool[lo : lo + B]
        gen = None
        if cfg.temperature > 0:
            gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + b)
        answers = answer_batch(model, tokenizer, batch, cfg.max_new_tokens, cfg.temperature, gen, fast, layout)
        lines = []
        for k, (q, (a, finished)) in enumerate(zip(batch, answers)):
            i = lo + k
            if i < next_index or kept >= cfg.num:
                continue
            new_tokens += len(tokenizer(a, add_special_tokens=False)["input_ids"])
            if eval_overlap(q):
                dropped += 1
                continue
            if not finished:
                truncated += 1
                if cfg.truncated == "drop":
                    a = None
                elif cfg.truncated == "trim":
                    a = trim_answer(a)
            if not a:
                dropped += 1
                continue
            lines.append(json.dumps(chat_record(i, q, a, finished)) + "\n")
            kept += 1
            next_index = i + 1
        if lines:
            with open(rec_path, "a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        b += 1
        if log is not None:
            el = time.time() - started
            log(f"{kept}/{cfg.num} pairs, questions up to {lo + len(batch)}, {dropped} dropped, {truncated} truncated, "
                f"{el:.0f} s")
    summary = {"out": str(rec_path), "pairs": kept, "dropped": dropped, "truncated": truncated,
               "seconds": round(time.time() - started, 1), "answer_tokens": new_tokens}  # this run's; tokens before trimming
    _write_atomic(state_path, json.dumps({"settings": settings, **asdict(cfg), "last_run": summary}, indent=1) + "\n")
    return summary
