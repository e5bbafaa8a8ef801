"""`vidgpt serve`: the HTTP API and the web chat page (see docs/SERVE.md)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="HTTP API and web chat page to make and edit clips",
        description="Load the model once and serve the JSON API (OpenAPI at /openapi.json) and the chat page at /. "
        "Binds to localhost by default. Limits (upload size, frames, queue length, ...) come from --config "
        "(a YAML of vidgpt.serve.ServeSettings fields) and --set KEY=VALUE.",
    )
    p.add_argument("--model", help="vidgpt model directory (default: $VIDGPT_MODEL or the shipped model/)")
    p.add_argument("--tiny", action="store_true", help="serve a tiny random model instead (noise; to try the page and API)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--plain", action="store_true", help="use the plain transformers decode loop instead of the fast one")
    p.add_argument("--config", help="YAML file of server limits (ServeSettings)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one limit, e.g. --set max_upload_bytes=1000000")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..serve.settings import ServeSettings

    settings = load_config(ServeSettings, args.config, args.overrides)
    _check_port(args.host, args.port)  # before loading the model: a taken port is one line, at once
    if args.tiny:
        from ..generate.tiny import tiny_pipeline

        pipe, name = tiny_pipeline(bits=6, max_positions=2048), "tiny random model (noise)"
    else:
        from ..generate.pipeline import resolve_model_dir

        from ..errors import ModelError

        try:
            d = resolve_model_dir(args.model)
        except ModelError as e:  # one line: there is no model, how to make one, and how to try the page anyway
            raise ModelError(f"{e}; `vidgpt serve --tiny` serves a tiny random model to try the page") from None
        from .generate import load_pipeline

        # as `vidgpt generate` loads it: speculative windows while they pay, the model's decode settings
        pipe = load_pipeline(d, device=args.device or None, plain=args.plain)
        name = str(d)
    import uvicorn

    from ..serve.app import create_app

    app = create_app(pipe, settings, model_name=name)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"vidgpt serve: http://{host}:{args.port}/  (model: {name}; Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"vidgpt serve: note: bound to {args.host}, reachable from other machines; there is no authentication", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_port(host: str, port: int) -> None:
    import socket

    from ..errors import VidgptError

    if not 0 <= port <= 65535:
        raise VidgptError(f"--port {port}: must be 0..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise VidgptError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --host or --port") from None
