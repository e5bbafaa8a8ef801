"""The FastAPI app of `vidgpt serve`: JSON API (OpenAPI at /openapi.json), SSE progress, the page at /.

    from vidgpt.serve import create_app
    app = create_app(pipe)              # a VidGPT (or None: every model endpoint answers 503)
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Errors are JSON `{"error": "<one line>", "status": N, "type": "..."}`: 404 unknown ids, 413 too
large uploads, 415 non-media uploads, 422 bad values (sizes, empty or long prompts, context
overflow), 429 full queue, 503 no model. Never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import VidgptError
from .jobs import Job, JobManager, QueueFull
from .schemas import ChatMessage, EditRequest, GenerationRequest
from .settings import ServeSettings
from .store import FILES, ClipStore, NotFound, SessionStore, new_id, private_dir
from .work import BadRequest, Work

log = logging.getLogger("vidgpt.serve")
STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {"video.mp4": "video/mp4", "clip.gif": "image/gif", "sheet.png": "image/png", "frame.png": "image/png"}


class NoModel(VidgptError):
    """The server has no model loaded (HTTP 503)."""


class UploadTooLarge(VidgptError):
    """An upload past ServeSettings.max_upload_bytes (HTTP 413)."""


class NotMedia(VidgptError):
    """An upload that is not a video or an image (HTTP 415)."""


STATUS = {NotFound: 404, UploadTooLarge: 413, NotMedia: 415, QueueFull: 429, NoModel: 503}


def _status(e: Exception) -> int:
    for cls, code in STATUS.items():
        if isinstance(e, cls):
            return code
    return 422  # BadRequest, GenerationError, VideoReadError, ...: the request cannot be served


def error(status: int, message: str, kind: str = "error") -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()), "status": status, "type": kind}, status_code=status)


def create_app(pipe=None, settings: ServeSettings | None = None, model_error: str | None = None, model_name: str = "") -> FastAPI:
    """The app over `pipe` (a VidGPT); with pipe=None it serves the page and answers 503 with `model_error`."""
    settings = settings or ServeSettings()
    root = private_dir()
    clips = ClipStore(root, settings.max_clips, settings.fps)
    sessions = SessionStore(settings.max_sessions)
    work = Work(pipe, clips, sessions, settings) if pipe is not None else None
    manager = JobManager(work or (lambda batch: None), settings.queue_limit, settings.max_batch, settings.max_jobs)
    no_model = model_error or "no model is loaded; start the server with `vidgpt serve --model DIR`"

    def close() -> None:
        manager.close()
        shutil.rmtree(root, ignore_errors=True)

    @asynccontextmanager
    async def lifespan(app):
        yield
        close()

    app = FastAPI(
        title="vidgpt", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Make and edit clips with a vidgpt model: generations, edits, chat sessions; "
        "jobs stream their progress as server-sent events.",
    )
    app.state.settings, app.state.clips, app.state.sessions, app.state.jobs = settings, clips, sessions, manager
    app.state.work, app.state.root, app.state.close = work, root, close

    def need_work() -> Work:
        if work is None:
            raise NoModel(no_model)
        return work

    # --- errors as JSON ---------------------------------------------------------------------
    @app.exception_handler(VidgptError)
    async def _vidgpt_error(request, e: VidgptError):
        return error(_status(e), str(e), type(e).__name__)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e: RequestValidationError):
        parts = []
        for err in e.errors()[:4]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return error(422, "; ".join(parts) or "invalid request", "ValidationError")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e: StarletteHTTPException):
        return error(e.status_code, e.detail if isinstance(e.detail, str) else "error", "HTTPError")

    @app.exception_handler(Exception)
    async def _internal(request, e: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error(500, f"internal error ({type(e).__name__}); the server log has the details", "InternalError")

    @app.middleware("http")
    async def _upload_size(request: Request, call_next):
        # refuse a declared too-large upload before its body is read (the copy below counts bytes too)
        if request.url.path == "/api/uploads":
            n = request.headers.get("content-length")
            if n and n.isdigit() and int(n) > settings.max_upload_bytes + 64 * 1024:
                return error(413, f"the upload is {int(n)} bytes; the limit is {settings.max_upload_bytes} (max_upload_bytes)", "UploadTooLarge")
        return await call_next(request)

    # --- page -------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health", summary="model, limits and load")
    def health():
        return {
            "status": "ok" if work is not None else "no_model", "version": __version__, "model": model_name or None,
            "error": None if work is not None else no_model, "limits": work.limits() if work is not None else None,
            "queued": len(manager.queue), "running": len(manager.running), "completed": manager.completed,
            "clips": len(clips), "sessions": len(sessions),
        }

    # --- jobs -------------------------------------------------------------------------------
    def job_info(job: Job) -> dict:
        return job.info(manager.position(job))

    @app.post("/api/generations", status_code=202, summary="text -> clip(s); returns a job at once")
    def create_generation(req: GenerationRequest):
        params, key = need_work().check_generate(req)
        return job_info(manager.submit(Job("generate", params, key)))

    @app.post("/api/edits", status_code=202, summary="edit a clip made here or uploaded; returns a job")
    def create_edit(req: EditRequest):
        params = need_work().check_edit(req)
        return job_info(manager.submit(Job("edit", params, session_id=req.session_id)))

    @app.get("/api/jobs/{job_id}", summary="a job's status, progress, preview and result")
    def get_job(job_id: str):
        return job_info(manager.get(job_id))

    @app.post("/api/jobs/{job_id}/cancel", summary="cancel a queued or running job")
    def cancel_job(job_id: str):
        return job_info(manager.cancel(job_id))

    @app.get("/api/jobs/{job_id}/events", summary="server-sent events: status, progress, preview, done|failed|cancelled")
    async def job_events(job_id: str, request: Request):
        job = manager.get(job_id)
        start = request.headers.get("last-event-id", "0")
        i = int(start) if start.isdigit() else 0

        async def stream():
            nonlocal i
            yield "retry: 2000\n\n"
            while True:
                events = job.events
                while i < len(events):
                    e = events[i]
                    i += 1
                    yield f"id: {i}\nevent: {e['event']}\ndata: {json.dumps(e['data'])}\n\n"
                if job.terminal and i >= len(job.events):
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # --- chat sessions ----------------------------------------------------------------------
    @app.post("/api/sessions", status_code=201, summary="start a chat session")
    def create_session():
        need_work()
        return sessions.create().info()

    @app.get("/api/sessions/{session_id}", summary="a session's turns (text and clip ids)")
    def get_session(session_id: str):
        return sessions.get(session_id).info()

    @app.delete("/api/sessions/{session_id}", status_code=204, summary="forget a session")
    def delete_session(session_id: str):
        sessions.delete(session_id)
        return Response(status_code=204)

    @app.post("/api/sessions/{session_id}/messages", status_code=202, summary="send a message; the answer (clip or text) is a job")
    def post_message(session_id: str, req: ChatMessage):
        params = need_work().check_chat(session_id, req)
        return job_info(manager.submit(Job("chat", params, session_id=session_id)))

    # --- clips and uploads ------------------------------------------------------------------
    @app.get("/api/clips/{clip_id}", summary="a clip's size and file URLs")
    def get_clip(clip_id: str):
        return clips.get(clip_id).info()

    @app.get("/api/clips/{clip_id}/{name}", summary="a clip as video.mp4, clip.gif, sheet.png (contact sheet) or frame.png")
    def get_clip_file(clip_id: str, name: str, download: bool = False):
        if name not in FILES:
            raise NotFound(f"clip file {name!r} unknown (known: {', '.join(FILES)})")
        path = clips.file(clip_id, name)
        fname = f"{clip_id}{Path(name).suffix}" if download else None
        return FileResponse(path, media_type=MEDIA_TYPES[name], filename=fname)

    @app.post("/api/uploads", status_code=201, summary="upload a video or image to edit (multipart field `file`)")
    def upload(file: UploadFile = File(...)):
        from ..data.video_io import MEDIA_EXTS, read_video

        name = Path(file.filename or "upload").name
        suffix = Path(name).suffix.lower()
        if suffix and suffix not in MEDIA_EXTS:
            raise NotMedia(f"{name}: not a video or image ({suffix}); send {', '.join(sorted(MEDIA_EXTS))}")
        updir = root / "uploads"
        updir.mkdir(exist_ok=True)
        path = updir / (new_id("up") + (suffix or ".bin"))
        try:
            size = 0
            with open(path, "wb") as out:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > settings.max_upload_bytes:
                        raise UploadTooLarge(f"{name}: more than {settings.max_upload_bytes} bytes (max_upload_bytes)")
                    out.write(chunk)
            try:
                frames = read_video(path, max_frames=settings.max_upload_frames, max_side=settings.max_upload_side)
            except VidgptError as e:
                why = str(e).replace(str(path), "").lstrip(": ").strip() or "unreadable"
                raise BadRequest(f"{name}: cannot be read as a video or image ({why})") from None
        finally:
            path.unlink(missing_ok=True)
        return clips.add(frames, "upload", name).info()

    return app
