"""A short, bounded load test on localhost only: N clients at once against a real uvicorn server
(tiny random pipeline), three rounds. Every generation completes (none lost, each clip downloadable
when its job is done), same-shape requests share decode batches, and memory stays flat: the clip
store, the job table and the clip folder stay within their limits, the Python objects allocated
after round 1 and still alive at the end stay under 4 MB, and the RSS of the last round is not above
round 1 by more than a loose margin."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc

import httpx
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

# longer runs by hand: VIDGPT_LOAD_ROUNDS=20 VIDGPT_LOAD_CLIENTS=16 (the time bound grows with them)
CLIENTS = int(os.environ.get("VIDGPT_LOAD_CLIENTS", 8))
ROUNDS = int(os.environ.get("VIDGPT_LOAD_ROUNDS", 3))
DEADLINE_S = 40.0 * ROUNDS


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def one_client(base: str, i: int, out: dict) -> None:
    """POST a generation, follow its event stream to the end, then download the clip."""
    with httpx.Client(base_url=base, timeout=60.0) as c:
        r = c.post("/api/generations", json={"prompt": f"client {i} circle", "frames": 5, "height": 32, "width": 32})
        r.raise_for_status()
        job = r.json()
        last = None
        with c.stream("GET", job["events_url"]) as s:
            event = None
            for line in s.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    last = (event, json.loads(line[6:]))
        assert last is not None and last[0] == "done", last
        clip = last[1]["result"]["clips"][0]
        video = c.get(clip["urls"]["mp4"])
        out[i] = (job["id"], video.status_code, video.content[4:8], len(video.content))


def test_concurrent_generations_complete_and_memory_stays_flat(pipe):
    from vidgpt.serve import ServeSettings, create_app
    from vidgpt.serve.threaded import serve_in_thread

    settings = ServeSettings(max_clips=3 * CLIENTS, max_jobs=2 * CLIENTS, queue_limit=2 * CLIENTS, max_batch=4)
    app = create_app(pipe, settings)
    start = time.monotonic()
    rss, batch_sizes = [], []
    with serve_in_thread(app, host="127.0.0.1") as base:
        assert base.startswith("http://127.0.0.1:")
        for round_ in range(ROUNDS):
            out: dict = {}
            threads = [threading.Thread(target=one_client, args=(base, i, out), daemon=True) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(1.0, DEADLINE_S - (time.monotonic() - start)))
            assert time.monotonic() - start < DEADLINE_S, "the load test ran past its time bound"
            assert sorted(out) == list(range(CLIENTS)), f"round {round_}: lost clients {set(range(CLIENTS)) - set(out)}"
            assert all(code == 200 and magic == b"ftyp" and n > 500 for _, code, magic, n in out.values()), out
            batch_sizes += [app.state.jobs.jobs[jid].batch_size for jid, *_ in out.values() if jid in app.state.jobs.jobs]
            assert app.state.jobs.wait_idle(30)
            rss.append(rss_mb())
            if round_ == 0:  # from here on, count the Python objects still alive at the end
                gc.collect()
                tracemalloc.start()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        # bounded state after ROUNDS * CLIENTS jobs (each also made a preview clip)
        assert len(app.state.clips) <= settings.max_clips
        assert len(list((app.state.root / "clips").iterdir())) <= settings.max_clips
        assert len(app.state.jobs.jobs) <= settings.max_jobs
        assert app.state.jobs.completed == ROUNDS * CLIENTS
    print(f"load: {ROUNDS}x{CLIENTS} generations in {time.monotonic() - start:.1f} s; RSS per round (MB) "
          f"{[round(x) for x in rss]}; Python heap growth after round 1 {grown:.2f} MB; batch sizes {sorted(batch_sizes)}")
    assert max(batch_sizes) > 1  # concurrent same-shape requests were decoded together
    assert grown < 4, f"{grown:.1f} MB of Python objects kept after rounds 2..{ROUNDS}"
    assert rss[-1] - rss[0] < 64, rss  # the process as a whole (allocator, threads): a loose bound
