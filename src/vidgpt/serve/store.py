"""What the server keeps between requests: clips (frames + files at stable URLs) and chat sessions.

Both are bounded (ServeSettings.max_clips / max_sessions): the oldest clip, or the least recently
used session, is forgotten first, so memory and disk stay flat however long the server runs.
Every file lives in one private temporary folder (mode 0700) removed by `close()`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VidgptError

# the files a clip is served as: URL name -> what writes it
FILES = {"video.mp4": "mp4", "clip.gif": "gif", "sheet.png": "sheet", "frame.png": "frame"}


class NotFound(VidgptError):
    """An unknown (or forgotten) clip, session or job id."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass
class StoredClip:
    id: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    kind: str  # generated | edit | chat | upload | preview
    label: str = ""  # the prompt, instruction or upload name
    block: object | None = None  # the VisualBlock the model wrote (None for uploads)
    created: float = field(default_factory=time.time)
    folder: Path | None = None

    def info(self) -> dict:
        T, H, W = self.frames.shape[:3]
        base = f"/api/clips/{self.id}"
        return {
            "id": self.id, "kind": self.kind, "label": self.label, "frames": int(T), "height": int(H), "width": int(W),
            "urls": {"mp4": f"{base}/video.mp4", "gif": f"{base}/clip.gif", "sheet": f"{base}/sheet.png", "frame": f"{base}/frame.png"},
        }


class ClipStore:
    """Clips by id, at most `max_clips`; files are written on first request (mp4 at once)."""

    def __init__(self, root: Path, max_clips: int, fps: float):
        self.root = Path(root)
        self.max_clips = max(1, int(max_clips))
        self.fps = fps
        self._clips: OrderedDict[str, StoredClip] = OrderedDict()
        self._lock = threading.Lock()
        self._file_lock = threading.Lock()

    def add(self, frames: np.ndarray, kind: str, label: str = "", block=None) -> StoredClip:
        from ..data.video_io import write_video

        clip = StoredClip(new_id("clip"), np.ascontiguousarray(frames), kind, label[:200], block)
        clip.folder = self.root / "clips" / clip.id
        clip.folder.mkdir(parents=True)
        write_video(clip.folder / "video.mp4", _even(clip.frames), fps=self.fps)
        with self._lock:
            self._clips[clip.id] = clip
            old = []
            while len(self._clips) > self.max_clips:
                old.append(self._clips.popitem(last=False)[1])
        for c in old:
            shutil.rmtree(c.folder, ignore_errors=True)
        return clip

    def get(self, clip_id: str) -> StoredClip:
        with self._lock:
            clip = self._clips.get(clip_id)
        if clip is None:
            raise NotFound(f"clip {clip_id!r} not found (unknown id, or forgotten: the server keeps the last {self.max_clips})")
        return clip

    def file(self, clip_id: str, name: str) -> Path:
        """The path of one of a clip's files (FILES), written now if it is not there yet."""
        from ..data.video_io import save_contact_sheet, write_video

        if name not in FILES:
            raise NotFound(f"clip file {name!r} unknown (known: {', '.join(FILES)})")
        clip = self.get(clip_id)
        p = clip.folder / name
        with self._file_lock:
            if not p.exists():
                if name == "clip.gif":
                    write_video(p, clip.frames, fps=self.fps)
                elif name == "sheet.png":
                    save_contact_sheet(p, clip.frames)
                elif name == "frame.png":
                    write_video(p, clip.frames[:1], fps=self.fps)
        return p

    def __len__(self) -> int:
        return len(self._clips)


def _even(frames: np.ndarray) -> np.ndarray:
    """mp4 (yuv420) needs even sides; odd upload sizes are cropped by one row/column."""
    T, H, W = frames.shape[:3]
    return frames[:, : H - H % 2, : W - W % 2] if (H % 2 or W % 2) else frames


@dataclass
class Session:
    id: str
    chat: object  # vidgpt.generate.chat.ChatSession
    clip_ids: list = field(default_factory=list)  # store id of each clip of chat.clips, in order
    last_used: float = field(default_factory=time.time)

    def info(self) -> dict:
        turns, k = [], 0
        from ..layout import VisualBlock

        for t in self.chat.turns:
            items = []
            for seg in t.content:
                if isinstance(seg, VisualBlock):
                    items.append({"clip": self.clip_ids[k] if k < len(self.clip_ids) else None})
                    k += 1
                else:
                    items.append({"text": str(seg)})
            turns.append({"role": t.role, "content": items})
        return {"id": self.id, "turns": turns, "clips": list(self.clip_ids), "dropped": self.chat.dropped}


class SessionStore:
    def __init__(self, max_sessions: int):
        self.max_sessions = max(1, int(max_sessions))
        self._s: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Session:
        from ..generate.chat import ChatSession

        s = Session(new_id("sess"), ChatSession())
        with self._lock:
            self._s[s.id] = s
            while len(self._s) > self.max_sessions:
                self._s.popitem(last=False)
        return s

    def get(self, sid: str) -> Session:
        with self._lock:
            s = self._s.get(sid)
            if s is not None:
                self._s.move_to_end(sid)
                s.last_used = time.time()
        if s is None:
            raise NotFound(f"session {sid!r} not found (unknown id, or dropped: the server keeps {self.max_sessions})")
        return s

    def delete(self, sid: str) -> None:
        with self._lock:
            if self._s.pop(sid, None) is None:
                raise NotFound(f"session {sid!r} not found")

    def __len__(self) -> int:
        return len(self._s)


def private_dir() -> Path:
    """A fresh temporary folder only this user can read (tempfile.mkdtemp makes it 0700)."""
    return Path(tempfile.mkdtemp(prefix="vidgpt-serve-"))
