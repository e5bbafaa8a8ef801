"""`vidgpt serve` API in-process (FastAPI's TestClient) on the tiny random pipeline: every endpoint,
jobs (SSE progress, preview, batching, cancel, time limit, a crashing job), and every bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fastapi.testclient import TestClient

from vidgpt.serve import ServeSettings, create_app

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"frames": 5, "height": 32, "width": 32}
LIMITS = dict(max_upload_bytes=200_000, max_prompt_chars=300, max_clips=64)


@pytest.fixture(scope="module")
def app(pipe):
    return create_app(pipe, ServeSettings(**LIMITS), model_name="tiny")


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def finished(client, app, job: dict) -> dict:
    assert app.state.jobs.wait_idle(60)
    return client.get(f"/api/jobs/{job['id']}").json()


def submit(client, body: dict, url: str = "/api/generations") -> dict:
    r = client.post(url, json=body)
    assert r.status_code == 202, r.text
    return r.json()


class Gate:
    """Holds the worker inside its next batch until the block ends (so jobs pile up in the queue)."""

    def __init__(self, app):
        self.m = app.state.jobs
        self.inner = self.m.runner
        self.entered, self.release = threading.Event(), threading.Event()

    def _runner(self, batch):
        self.entered.set()
        self.release.wait(30)
        return self.inner(batch)

    def __enter__(self):
        self.m.runner = self._runner
        return self

    def __exit__(self, *exc):
        self.m.runner = self.inner
        self.release.set()


def test_health_page_and_openapi(client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["model"] == "tiny" and h["error"] is None
    assert h["limits"]["max_frames"] == 29 and h["limits"]["max_side"] == 64 and h["limits"]["side_multiple"] == 16
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "EventSource" in client.get("/static/app.js").text
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/generations", "/api/edits", "/api/uploads", "/api/sessions", "/api/sessions/{session_id}/messages",
              "/api/jobs/{job_id}", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel", "/api/clips/{clip_id}/{name}"):
        assert p in paths, p


def test_generation_streams_progress_preview_then_result(client, app, pipe):
    job = submit(client, {"prompt": "a red circle moving right", "seed": 0, **SMALL})
    assert job["status"] in ("queued", "running") and job["events_url"] == f"/api/jobs/{job['id']}/events"
    events = []
    with client.stream("GET", job["events_url"]) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, line[6:]))
    names = [n for n, _ in events]
    assert names[:2] == ["status", "status"] and names[-1] == "done"
    assert "preview" in names and names.index("preview") < names.index("done")
    j = client.get(f"/api/jobs/{job['id']}").json()
    assert j["status"] == "done" and j["progress"]["tokens"] == j["progress"]["total"] > 0
    clip = j["result"]["clips"][0]
    assert (clip["frames"], clip["height"], clip["width"]) == (5, 32, 32)
    # the files at their stable URLs are what they say they are
    mp4, gif, sheet = (client.get(clip["urls"][k]) for k in ("mp4", "gif", "sheet"))
    assert mp4.headers["content-type"] == "video/mp4" and mp4.content[4:8] == b"ftyp"
    assert gif.content[:6] == b"GIF89a" and sheet.content[:8] == b"\x89PNG\r\n\x1a\n"
    dl = client.get(clip["urls"]["mp4"] + "?download=1")
    assert f'filename="{clip["id"]}.mp4"' in dl.headers["content-disposition"]
    assert client.get(f"/api/clips/{clip['id']}").json()["urls"] == clip["urls"]
    # the server's clip is the library's clip for the same seed, and the preview is its blueprint
    stored = app.state.clips.get(clip["id"])
    ref = pipe.generate("a red circle moving right", seed=0, **SMALL)
    assert stored.block == ref.blocks[0]
    np.testing.assert_array_equal(stored.frames, ref.videos[0])
    preview = app.state.clips.get(j["preview"]["id"])
    np.testing.assert_array_equal(preview.frames, pipe.to_frames(pipe.decode_blocks([ref.blocks[0]], preview=True))[0])


def test_same_shape_unseeded_requests_are_decoded_in_one_batch(client, app):
    with Gate(app) as g:
        blocker = submit(client, {"prompt": "first", "seed": 1, **SMALL})
        assert g.entered.wait(10)
        same = [submit(client, {"prompt": f"clip {i}", **SMALL}) for i in range(3)]
        other_shape = submit(client, {"prompt": "bigger", "frames": 9, "height": 32, "width": 32})
        seeded = submit(client, {"prompt": "seeded", "seed": 5, **SMALL})
        assert [client.get(f"/api/jobs/{j['id']}").json()["queue_position"] for j in same] == [0, 1, 2]
    jobs = [finished(client, app, j) for j in [blocker, *same, other_shape, seeded]]
    assert all(j["status"] == "done" for j in jobs), [j["error"] for j in jobs]
    assert [j["batch_size"] for j in jobs] == [1, 3, 3, 3, 1, 1]
    ids = {j["result"]["clips"][0]["id"] for j in jobs}
    assert len(ids) == 6
    assert [j["result"]["prompt"] for j in jobs[1:4]] == ["clip 0", "clip 1", "clip 2"]
    # each job of the batch got the blueprint preview of its own row
    previews = [app.state.clips.get(j["preview"]["id"]) for j in jobs[1:4]]
    assert len({p.id for p in previews}) == 3 and [p.label for p in previews] == ["clip 0", "clip 1", "clip 2"]
    assert jobs[4]["result"]["clips"][0]["frames"] == 9


def test_generations_without_a_negative_prompt_get_the_models_default(client, app, pipe, monkeypatch):
    calls = []
    real = pipe.default_negative
    monkeypatch.setattr(pipe, "contrast_motion", True)
    monkeypatch.setattr(pipe, "default_negative", lambda prompt, *a: calls.append(prompt) or real(prompt, *a))
    with Gate(app) as g:
        single = submit(client, {"prompt": "a ball moving left", "seed": 1, **SMALL})
        assert g.entered.wait(10)
        batched = [submit(client, {"prompt": f"ball {i} moving up", **SMALL}) for i in range(2)]
        explicit = submit(client, {"prompt": "ball moving up", "negative_prompt": "", **SMALL})
    jobs = [finished(client, app, j) for j in [single, *batched, explicit]]
    assert all(j["status"] == "done" for j in jobs), [j["error"] for j in jobs]
    assert [j["batch_size"] for j in jobs] == [1, 3, 3, 3]
    assert calls == ["a ball moving left", "ball 0 moving up", "ball 1 moving up"]  # not for the explicit ""


def test_queue_limit_and_cancel_queued(pipe):
    app = create_app(pipe, ServeSettings(queue_limit=2))
    with TestClient(app) as client:
        with Gate(app) as g:
            running = submit(client, {"prompt": "running", "seed": 0, **SMALL})
            assert g.entered.wait(10)
            a = submit(client, {"prompt": "a", "seed": 0, **SMALL})
            b = submit(client, {"prompt": "b", "seed": 0, **SMALL})
            r = client.post("/api/generations", json={"prompt": "c", **SMALL})
            assert r.status_code == 429 and "queue is full" in r.json()["error"]
            c = client.post(f"/api/jobs/{a['id']}/cancel").json()
            assert c["status"] == "cancelled" and "before it started" in c["error"]
            with client.stream("GET", a["events_url"]) as s:
                assert "event: cancelled" in s.read().decode()
        assert finished(client, app, running)["status"] == "done"
        assert finished(client, app, b)["status"] == "done"
        assert client.get(f"/api/jobs/{a['id']}").json()["result"] is None


class HoldFirstStep:
    """A decode backend that stops at its first token until released (a job caught mid-decode)."""

    def __init__(self, inner):
        self.inner = inner
        self.started, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, tokens):
        if not self.started.is_set():
            self.started.set()
            self.release.wait(30)
        return self.inner.step(tokens)


def test_cancel_a_running_job_then_the_next_one_works(client, app, pipe):
    orig = pipe.backend
    hold = HoldFirstStep(orig)
    pipe.backend = hold
    try:
        clips_before = len(app.state.clips)
        job = submit(client, {"prompt": "long one", "seed": 0, "frames": 29, "height": 64, "width": 64})
        assert hold.started.wait(20)
        r = client.post(f"/api/jobs/{job['id']}/cancel").json()
        assert r["status"] == "running"  # asked; it stops at the next token
        hold.release.set()
        j = finished(client, app, job)
        assert j["status"] == "cancelled" and j["result"] is None
        assert len(app.state.clips) == clips_before
        assert j["progress"]["tokens"] < 100  # stopped near the start, not after 700 tokens
    finally:
        pipe.backend = orig
    assert pipe.backend is orig
    nxt = finished(client, app, submit(client, {"prompt": "after", "seed": 0, **SMALL}))
    assert nxt["status"] == "done"


def test_time_limit_and_a_crashing_job_do_not_break_the_next(pipe):
    app = create_app(pipe, ServeSettings(job_timeout_s=0.0))
    with TestClient(app) as client:
        j = finished(client, app, submit(client, {"prompt": "slow", **SMALL}))
        assert j["status"] == "failed" and "time limit" in j["error"]

    app = create_app(pipe)
    with TestClient(app) as client:
        inner = app.state.jobs.runner

        def flaky(batch):
            if batch[0].params.get("prompt") == "boom":
                raise RuntimeError("simulated bug with a /secret/path")
            return inner(batch)

        app.state.jobs.runner = flaky
        bad = submit(client, {"prompt": "boom", "seed": 0, **SMALL})
        good = submit(client, {"prompt": "fine", "seed": 0, **SMALL})
        bad, good = finished(client, app, bad), finished(client, app, good)
        assert bad["status"] == "failed" and bad["error"].startswith("internal error (RuntimeError)")
        assert "/secret/path" not in bad["error"] and "Traceback" not in str(bad)
        assert good["status"] == "done"
        root = app.state.root
        assert root.stat().st_mode & 0o077 == 0  # the server's files are private to its user
    assert not root.exists()  # and removed at shutdown


def test_every_edit_task_on_a_generated_clip(client, app):
    gen = finished(client, app, submit(client, {"prompt": "source", "seed": 0, **SMALL}))
    src_id = gen["result"]["clips"][0]["id"]
    src = app.state.clips.get(src_id).frames
    bodies = {
        "instruct": {"instruction": "make it blue"},
        "continue": {},
        "inpaint": {"mask": [4, 4, 20, 20]},
        "outpaint": {},
        "interpolate": {},
    }
    jobs = {t: submit(client, {"clip_id": src_id, "task": t, "seed": 0, **b}, "/api/edits") for t, b in bodies.items()}
    out = {}
    for t, job in jobs.items():
        j = finished(client, app, job)
        assert j["status"] == "done", (t, j["error"])
        assert j["result"]["source"] == src_id and j["result"]["task"] == t
        out[t] = app.state.clips.get(j["result"]["clips"][0]["id"]).frames
    assert out["instruct"].shape == (5, 32, 32, 3)
    assert out["continue"].shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(out["continue"][:5], src)
    keep = np.ones((32, 32), bool)
    keep[4:20, 4:20] = False
    np.testing.assert_array_equal(out["inpaint"][:, keep], src[:, keep])
    assert out["outpaint"].shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(out["outpaint"][:, 16:48, 16:48], src)
    assert out["interpolate"].shape == (9, 32, 32, 3)
    np.testing.assert_array_equal(out["interpolate"][::2], src)


def test_chat_session_keeps_turns_and_clips_in_context(client, app):
    sess = client.post("/api/sessions")
    assert sess.status_code == 201
    sid = sess.json()["id"]
    url = f"/api/sessions/{sid}/messages"
    first = finished(client, app, submit(client, {"text": "make a red circle moving right", "seed": 0, **SMALL}, url))
    assert first["status"] == "done" and first["result"]["kind"] == "clip" and first["preview"] is not None
    c1 = first["result"]["clips"][0]["id"]
    # an edit sent with the session joins its context
    ed = finished(client, app, submit(client, {"clip_id": c1, "task": "continue", "session_id": sid, "seed": 0}, "/api/edits"))
    c2 = ed["result"]["clips"][0]["id"]
    # no size given: the new clip takes the shape of the clip it refers to ("the first clip")
    third = finished(client, app, submit(client, {"text": "now make the first clip blue", "seed": 0}, url))
    assert third["result"]["kind"] == "clip" and third["result"]["referred"] == c1
    assert (third["result"]["clips"][0]["frames"], third["result"]["clips"][0]["width"]) == (5, 32)
    latest = finished(client, app, submit(client, {"text": "make it move left", "seed": 0, **SMALL}, url))
    assert latest["result"]["referred"] == third["result"]["clips"][0]["id"]
    text = finished(client, app, submit(client, {"text": "hello", "mode": "text", "seed": 0, "max_text_tokens": 8}, url))
    assert text["status"] == "done" and text["result"]["kind"] == "text" and isinstance(text["result"]["text"], str)
    info = client.get(f"/api/sessions/{sid}").json()
    assert [t["role"] for t in info["turns"]] == ["user", "assistant"] * 5
    assert info["turns"][1]["content"] == [{"clip": c1}]
    assert info["turns"][2]["content"][0] == {"clip": c1} and info["turns"][3]["content"] == [{"clip": c2}]
    assert all(c.frames is None for c in app.state.sessions.get(sid).chat.clips)  # frames live in the clip store only
    assert client.delete(f"/api/sessions/{sid}").status_code == 204
    assert client.get(f"/api/sessions/{sid}").status_code == 404
    assert client.post(url, json={"text": "hi"}).status_code == 404


def test_uploads_good_and_bad(client, app, media_files, tmp_path):
    def up(path, name=None):
        return client.post("/api/uploads", files={"file": (name or path.name, path.read_bytes(), "application/octet-stream")})

    r = up(media_files.clip)
    assert r.status_code == 201, r.text
    clip = r.json()
    assert (clip["kind"], clip["frames"], clip["height"], clip["width"]) == ("upload", 17, 48, 64)
    assert up(media_files.gif).json()["frames"] == 9
    assert up(media_files.png).json()["frames"] == 1
    # an uploaded clip can be edited (resized to what the model makes)
    j = finished(client, app, submit(client, {"clip_id": clip["id"], "task": "continue", "height": 32, "width": 32, "max_frames": 5, "seed": 0}, "/api/edits"))
    assert j["status"] == "done" and j["result"]["clips"][0]["frames"] == 10
    root = str(app.state.root)
    for bad in (media_files.text, media_files.empty, media_files.truncated):
        r = up(bad)
        assert r.status_code == 422, (bad.name, r.text)
        assert r.json()["error"].startswith(f"{bad.name}: cannot be read") and root not in r.text
    r = up(media_files.notes)
    assert r.status_code == 415 and "not a video or image" in r.json()["error"]
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).integers(0, 256, 250_000, dtype=np.uint8).tobytes())
    r = up(big)  # a declared size under the early check: refused while it is copied
    assert r.status_code == 413 and "max_upload_bytes" in r.json()["error"]
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(bytes(400_000))
    r = up(huge)  # refused from its Content-Length before the body is read
    assert r.status_code == 413 and "limit is 200000" in r.json()["error"]
    assert client.post("/api/uploads").status_code == 422
    assert list((app.state.root / "uploads").iterdir()) == []  # nothing left behind


BAD_GENERATIONS = [
    ({"prompt": ""}, "the prompt is empty"),
    ({"prompt": "   "}, "the prompt is empty"),
    ({"prompt": "x" * 301}, "limit is 300"),
    ({"prompt": "a", "frames": 4}, "1+4n"),
    ({"prompt": "a", "frames": 0}, "positive"),
    ({"prompt": "a", "frames": 37}, "at most 33 frames (max_frames)"),
    ({"prompt": "a", "frames": 33}, "at most 29 frames per clip for this model"),
    ({"prompt": "a", "height": 40}, "multiple of 16"),
    ({"prompt": "a", "width": 512}, "max_side"),
    ({"prompt": "a", "width": 128}, "at most 64 pixels per side"),
    ({"prompt": "a", "num": 9}, "max_num"),
    ({"prompt": "a", "cfg": -1}, "cfg"),
    ({"prompt": "a", "top_p": 0}, "top_p"),
    ({"prompt": "a", "temperature": "hot"}, "temperature"),
    ({"prompt": "a", "path": "/etc/passwd"}, "path: Extra inputs are not permitted"),
    ({}, "prompt: Field required"),
]


@pytest.mark.parametrize("body,why", BAD_GENERATIONS, ids=[w for _, w in BAD_GENERATIONS])
def test_bad_generation_requests_are_4xx_json(client, body, why):
    body = {**SMALL, **body} if body else body
    r = client.post("/api/generations", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert set(err) == {"error", "status", "type"} and err["status"] == 422
    assert why in err["error"] and "Traceback" not in r.text and "\n" not in err["error"]


def test_bad_ids_edits_and_bodies(client, app):
    gen = finished(client, app, submit(client, {"prompt": "src", "seed": 0, **SMALL}))
    cid = gen["result"]["clips"][0]["id"]
    cases = [
        ("post", "/api/edits", {"clip_id": "clip_nope", "instruction": "x"}, 404, "clip 'clip_nope' not found"),
        ("post", "/api/edits", {"clip_id": cid}, 422, "instruction is empty"),
        ("post", "/api/edits", {"clip_id": cid, "task": "inpaint"}, 422, "needs a mask"),
        ("post", "/api/edits", {"clip_id": cid, "task": "inpaint", "mask": [0, 0, 99, 99]}, 422, "not inside"),
        ("post", "/api/edits", {"clip_id": cid, "task": "inpaint", "mask": [0, 0, 9]}, 422, "mask"),
        ("post", "/api/edits", {"clip_id": cid, "task": "explode"}, 422, "task"),
        ("post", "/api/edits", {"clip_id": cid, "task": "continue", "session_id": "sess_nope"}, 404, "session"),
        ("post", "/api/edits", {"clip_id": cid, "task": "continue", "height": 5000}, 422, "max_side"),
        ("post", "/api/sessions/sess_nope/messages", {"text": "hi"}, 404, "session 'sess_nope' not found"),
        ("get", "/api/sessions/sess_nope", None, 404, "not found"),
        ("delete", "/api/sessions/sess_nope", None, 404, "not found"),
        ("get", "/api/jobs/job_nope", None, 404, "job 'job_nope' not found"),
        ("post", "/api/jobs/job_nope/cancel", None, 404, "not found"),
        ("get", "/api/jobs/job_nope/events", None, 404, "not found"),
        ("get", "/api/clips/clip_nope", None, 404, "not found"),
        ("get", f"/api/clips/{cid}/passwd", None, 404, "clip file 'passwd' unknown"),
        ("get", f"/api/clips/{cid}/..%2F..%2Fetc%2Fpasswd", None, 404, ""),
        ("get", "/api/nothing", None, 404, "Not Found"),
    ]
    for method, url, body, status, why in cases:
        r = getattr(client, method)(url, **({"json": body} if body is not None else {}))
        assert r.status_code == status, (url, body, r.text)
        assert why in r.json()["error"], (url, r.json())
    sid = client.post("/api/sessions").json()["id"]
    for body, why in [({"text": ""}, "the message is empty"), ({"text": "x" * 400}, "limit is 300"),
                      ({"text": "make it", "frames": 6}, "1+4n"), ({"text": "hi", "mode": "song"}, "mode")]:
        r = client.post(f"/api/sessions/{sid}/messages", json=body)
        assert r.status_code == 422 and why in r.json()["error"], r.text
    r = client.post("/api/generations", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()


def test_more_context_than_the_model_holds(text_tok, media_files):
    from vidgpt.generate.tiny import tiny_pipeline

    small = tiny_pipeline(text_tok, bits=6, max_positions=256)
    app = create_app(small)
    with TestClient(app) as client:
        r = client.post("/api/generations", json={"prompt": "a", "frames": 17, "height": 64, "width": 64})
        assert r.status_code == 422 and "more than the model's 256 positions" in r.json()["error"]
        sid = client.post("/api/sessions").json()["id"]
        r = client.post(f"/api/sessions/{sid}/messages", json={"text": "make it", "frames": 17, "height": 64, "width": 64})
        assert r.status_code == 422 and "256 positions" in r.json()["error"]
        up = client.post("/api/uploads", files={"file": ("clip.mp4", media_files.clip.read_bytes())}).json()
        r = client.post("/api/edits", json={"clip_id": up["id"], "task": "continue", "height": 32, "width": 48})
        assert r.status_code == 422 and "256 positions" in r.json()["error"]


def test_no_model_says_so(tmp_path):
    app = create_app(None, model_error="model/: no vidgpt model here yet")
    with TestClient(app) as client:
        h = client.get("/api/health").json()
        assert h["status"] == "no_model" and h["error"] == "model/: no vidgpt model here yet"
        for url, body in [("/api/generations", {"prompt": "a"}), ("/api/sessions", None),
                          ("/api/edits", {"clip_id": "clip_x", "instruction": "x"})]:
            r = client.post(url, json=body)
            assert r.status_code == 503 and r.json()["error"] == "model/: no vidgpt model here yet"
        assert client.get("/").status_code == 200


def test_cli_serve_without_a_model_is_one_line(tmp_path, capsys):
    from vidgpt.cli import build_parser, main

    args = build_parser().parse_args(["serve", "--port", "9123", "--set", "queue_limit=3"])
    assert (args.host, args.port, args.overrides) == ("127.0.0.1", 9123, ["queue_limit=3"])
    assert main(["serve", "--model", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidgpt: error:") and "model directory not found" in err and "\n" not in err
    assert "vidgpt serve --tiny" in err


def test_cli_serve_loads_the_model_as_generate_does(tmp_path, monkeypatch):
    """`vidgpt serve --model M` loads through the CLI's load_pipeline (speculative windows, the model's decode
    settings), `--plain` included."""
    import vidgpt.commands.generate as gen_cmd
    import vidgpt.commands.serve as serve_cmd
    from vidgpt.cli import main

    seen = []

    class Stop(Exception):
        pass

    def fake(model, device=None, plain=False, **kw):
        seen.append((str(model), device, plain))
        raise Stop

    monkeypatch.setattr(gen_cmd, "load_pipeline", fake)
    monkeypatch.setattr(serve_cmd, "_check_port", lambda host, port: None)
    (tmp_path / "vidgpt.json").write_text("{}")
    for extra, plain in (([], False), (["--plain"], True)):
        with pytest.raises(Stop):
            main(["serve", "--model", str(tmp_path)] + extra)
        assert seen[-1] == (str(tmp_path), None, plain)


def test_upload_limits_on_side_and_frames(pipe, media_files):
    app = create_app(pipe, ServeSettings(max_upload_side=32, max_upload_frames=5))
    with TestClient(app) as client:
        r = client.post("/api/uploads", files={"file": ("clip.mp4", media_files.clip.read_bytes())})
        assert r.status_code == 422 and "64x48 exceeds the 32 px limit per side" in r.json()["error"]
    app = create_app(pipe, ServeSettings(max_upload_frames=5))
    with TestClient(app) as client:
        r = client.post("/api/uploads", files={"file": ("clip.mp4", media_files.clip.read_bytes())})
        assert r.status_code == 201 and r.json()["frames"] == 5  # the rest of a long upload is not read


def test_prompt_expansion_and_several_samples(client, app, pipe):
    """A model that expands prompts (a text decode before the clip): the watch follows both calls; no batching."""
    pipe.prompt_expansion = True
    try:
        with Gate(app) as g:
            blocker = submit(client, {"prompt": "first", "seed": 1, **SMALL})
            assert g.entered.wait(10)
            two = [submit(client, {"prompt": f"p{i}", **SMALL}) for i in range(2)]
            many = submit(client, {"prompt": "several", "num": 2, "seed": 3, **SMALL})
        jobs = [finished(client, app, j) for j in [blocker, *two, many]]
    finally:
        pipe.prompt_expansion = False
    assert all(j["status"] == "done" for j in jobs), [j["error"] for j in jobs]
    assert [j["batch_size"] for j in jobs] == [1, 1, 1, 1]
    assert len(jobs[3]["result"]["clips"]) == 2 and jobs[3]["preview"] is not None


def test_cli_serve_on_a_taken_port_is_one_line(capsys):
    import socket

    from vidgpt.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--tiny", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"vidgpt: error: cannot listen on 127.0.0.1:{port} (Address already in use); pick another --host or --port"


def test_a_speculative_pipeline_still_reports_progress_and_preview(client, app, pipe):
    """With speculative decoding on, the watched backend keeps the one-token loop it observes."""
    if not hasattr(pipe, "speculative"):
        pytest.skip("this pipeline has no speculative decoding")
    old = pipe.speculative
    pipe.speculative = 3
    try:
        j = finished(client, app, submit(client, {"prompt": "spec", "seed": 0, **SMALL}))
    finally:
        pipe.speculative = old
    assert j["status"] == "done" and j["preview"] is not None
    assert j["progress"]["tokens"] == j["progress"]["total"] > 0
