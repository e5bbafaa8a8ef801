"""The text tokenizer of a model directory without transformers: `tokenizers` + the chat template in jinja2.

Importing transformers and building its tokenizer (which deep-copies the 16k visual tokens it holds as added
tokens) cost `vidgpt generate` ~2-3 s a call on the 2-core CPU. What generation asks of a text tokenizer is
small (layout.py: encode without specials, decode, render the chat template; the special ids), and that is all
`LightTextTokenizer` offers. It gives what AutoTokenizer gives on the same directory (tests/test_light_model.py);
`load_light_tokenizer` returns None for any directory it is not sure of, and the caller loads AutoTokenizer.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

# tokenizer_config.json classes that are tokenizer.json and nothing more (no Python-side normalisation)
PLAIN_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
SPECIALS = ("bos_token", "eos_token", "pad_token", "unk_token")


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class LightTextTokenizer:
    """The slice of a transformers tokenizer that vidgpt's generation uses, over a `tokenizers.Tokenizer`."""

    def __init__(self, tokenizer, specials: dict[str, str | None], chat_template: str | None = None,
                 clean_up_tokenization_spaces: bool = False):
        self._tok = tokenizer
        self.chat_template = chat_template
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        for name in SPECIALS:
            text = specials.get(name)
            setattr(self, name, text)
            setattr(self, name + "_id", None if text is None else tokenizer.token_to_id(text))
        self._env = None

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({i for i in (getattr(self, n + "_id") for n in SPECIALS) if i is not None})

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        if not isinstance(text, str):
            raise TypeError("LightTextTokenizer encodes one string at a time")
        return {"input_ids": self.encode(text, add_special_tokens)}

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None) -> str:
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        if clean:  # the English clean-up transformers applies when asked
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(a, b)
        return text

    def _environment(self):
        """A sandboxed jinja2 environment with the options and helpers chat templates are written for."""
        if self._env is None:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[jinja2.ext.loopcontrols])

            def raise_exception(message):
                raise jinja2.exceptions.TemplateError(message)

            def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
                return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                                  sort_keys=sort_keys)

            env.filters["tojson"] = tojson
            env.globals["raise_exception"] = raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._env = env
        return self._env

    def apply_chat_template(self, messages, tokenize: bool = True, add_generation_prompt: bool = False, **kwargs):
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template")
        template = self._environment().from_string(self.chat_template)
        specials = {name: getattr(self, name) for name in SPECIALS}
        text = template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                               **{**specials, **kwargs})
        return self.encode(text, add_special_tokens=False) if tokenize else text


def load_light_tokenizer(directory) -> LightTextTokenizer | None:
    """The directory's text tokenizer, or None where it is not a plain tokenizer.json one (then use AutoTokenizer)."""
    d = Path(directory)
    try:
        cfg = json.loads((d / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    if not (d / "tokenizer.json").is_file() or cfg.get("tokenizer_class") not in PLAIN_CLASSES:
        return None
    from tokenizers import Tokenizer

    template = None
    if (d / "chat_template.jinja").is_file():
        template = (d / "chat_template.jinja").read_text()
    elif isinstance(cfg.get("chat_template"), str):
        template = cfg["chat_template"]
    elif cfg.get("chat_template"):  # a list of named templates: not handled here
        return None
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    specials = {name: _token_text(cfg.get(name)) for name in SPECIALS}
    if any(text is not None and tok.token_to_id(text) is None for text in specials.values()):
        return None  # a special token that tokenizer.json does not hold: transformers would add it
    return LightTextTokenizer(tok, specials, template, cfg.get("clean_up_tokenization_spaces", False))
