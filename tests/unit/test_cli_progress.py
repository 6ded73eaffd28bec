"""The upload progress bar of the vzmaster command."""

import io

from vzmaster.output import ProgressBar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_shows_percent_and_size_and_ends_its_line():
    out = Terminal()
    bar = ProgressBar("node1 app.tar.zst", out)
    bar(0, 2_000_000)
    bar(2_000_000, 2_000_000)
    text = out.getvalue()
    assert "node1 app.tar.zst 100% |" + "#" * 30 + "| 2.0/2.0 MB" in text
    assert text.endswith("\n")


def test_the_bar_is_silent_when_not_on_a_terminal():
    out = io.StringIO()
    ProgressBar("x", out)(5, 10)
    assert out.getvalue() == ""


def test_a_resumed_upload_counts_its_rate_from_where_it_resumed(monkeypatch):
    clock = iter([0.0, 0.0, 1.0])
    monkeypatch.setattr("vzmaster.output.time.monotonic", lambda: next(clock))
    out = Terminal()
    bar = ProgressBar("x", out)
    bar(900_000_000, 1_000_000_000)
    bar(1_000_000_000, 1_000_000_000)
    assert " 100 MB/s " in out.getvalue()  # 100 MB in a second, not 1 GB
