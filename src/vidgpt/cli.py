"""`vidgpt` command line: a thin layer over the library.

Each part registers its own subcommands from `vidgpt.commands.<part>` (a `register(subparsers)`
function); handlers import heavy modules lazily. Any VidgptError is printed as one line on
stderr with exit code 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import VidgptError, one_line

# Order is the order of `vidgpt --help`.
COMMAND_MODULES = ["demo", "tokenizer", "data", "estimate", "lm", "generate", "evaluate", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidgpt",
        description="Make a pretrained LLM generate and edit video through a lookup-free video tokenizer.",
    )
    parser.add_argument("--version", action="version", version=f"vidgpt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"vidgpt.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"vidgpt.commands.{name}":
                continue  # part not built yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # a group command without its subcommand prints that group's help
        (getattr(args, "_parser", None) or parser).print_help()
        return 2
    debug = args.debug or os.environ.get("VIDGPT_DEBUG") == "1"
    try:
        rc = args.func(args)
        return int(rc or 0)
    except VidgptError as e:
        if debug:
            raise
        print(f"vidgpt: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vidgpt: interrupted", file=sys.stderr)
        return 130


def add_group(sub, name: str, help: str):
    """Add a command group (e.g. `vidgpt tokenizer ...`) and return its subparsers."""
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(func=None, _parser=p)
    return p.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


if __name__ == "__main__":
    raise SystemExit(main())
