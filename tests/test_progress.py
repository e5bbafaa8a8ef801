"""One rule for every progress bar: drawn when asked for and stderr is a terminal; VIDGPT_PROGRESS forces it."""

import io
import sys

from vidgpt.utils import progress_wanted


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_bars_only_on_a_terminal_unless_forced(monkeypatch):
    monkeypatch.delenv("VIDGPT_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file or a pipe
    assert not progress_wanted(True) and not progress_wanted(False)
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert progress_wanted(True) and not progress_wanted(False)  # --no-progress still wins on a terminal
    monkeypatch.setenv("VIDGPT_PROGRESS", "0")
    assert not progress_wanted(True)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv("VIDGPT_PROGRESS", "1")
    assert progress_wanted(False)


def test_training_bar_writes_nothing_to_a_log(monkeypatch, capsys):
    """`vidgpt data synth` (progress on by default) into a pipe: no carriage-return spam in the log."""
    monkeypatch.delenv("VIDGPT_PROGRESS", raising=False)
    from vidgpt.cli import main

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        assert main(["data", "synth", "--out", d, "--num", "2", "--frames", "1", "--height", "32", "--width", "32"]) == 0
    assert "synth:" not in capsys.readouterr().err

