"""Run the app under uvicorn in a background thread (tests, notebooks): `with serve_in_thread(app) as url:`."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from ..errors import VidgptError


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0):
    """Start uvicorn on host:port (0 = a free port) in a daemon thread; yields the base URL; stops it after."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # not the main thread (older uvicorn)
    thread = threading.Thread(target=server.run, name="vidgpt-serve-http", daemon=True)
    thread.start()
    end = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > end:
            raise VidgptError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
