"""`vidgpt serve`: an HTTP API (FastAPI) and a web chat page to make and edit clips.

Modules: settings (limits), store (clips and chat sessions), jobs (queue, worker, batching,
cancellation), progress (progress, previews and cancellation around the decode backend),
work (request checks and the work of each job on the pipeline), schemas (request bodies),
app (routes), static/ (the page).
"""

from .settings import ServeSettings


def create_app(*args, **kwargs):
    from .app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["ServeSettings", "create_app"]
