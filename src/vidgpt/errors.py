"""Every error vidgpt raises on purpose is a VidgptError; the CLI prints it as one line."""

import sys


class VidgptError(Exception):
    """Base class: a problem the user can act on, described in one line."""


class ConfigError(VidgptError):
    """A config file or value is missing, malformed or inconsistent."""


class VideoReadError(VidgptError):
    """A video, image or frame folder could not be read (names the file and the problem)."""


class VideoWriteError(VidgptError):
    """A video or image could not be written."""


class TokenizerError(VidgptError):
    """Bad input to the video tokenizer (shape, range) or a bad tokenizer directory."""


class VocabError(VidgptError):
    """A token id or visual code outside the unified vocabulary."""


class LayoutError(VidgptError):
    """A token sequence that does not follow the layout (says where it broke)."""


class ModelError(VidgptError):
    """A backbone or vidgpt model directory that cannot be loaded or lacks metadata."""


class TrainingError(VidgptError):
    """Training cannot go on (too many non-finite losses, bad checkpoint, ...)."""


class DataError(VidgptError):
    """A dataset, shard or caption file is missing or malformed."""


class GenerationError(VidgptError):
    """A generation request that cannot be served (empty prompt, bad size, context overflow)."""


def one_line(err: BaseException) -> str:
    """The error's message on one line (what `vidgpt` and the tools print)."""
    return " ".join(str(err).split())


def run_tool(main, prog: str) -> None:
    """Run a tools/ script's main() and exit with its code; a VidgptError ends it with one line, like `vidgpt`."""
    try:
        code = main()
    except VidgptError as e:
        sys.exit(f"{prog}: error: {one_line(e)}")
    sys.exit(code)
