"""The output layer of the ``vzmaster`` command: records as tables, text or one JSON document.

A command returns what it shows (``Shown``: ``View``s of its records, made by one
function per record type) and never writes or checks ``--json`` itself; ``Output``
prints them for every host the same way:

- text: a listing is a table, a record alone its own text; with several hosts each
  host's part follows an ``== HOST`` header;
- JSON: one document. With one host, the object or array of that host's records, as
  before; with several, one array of every host's records, each with a ``host`` field.

Errors go to stderr as ``vzmaster: HOST: message``, after stdout is flushed, so a
terminal or a file given both shows each error under its host's header. A reader that
goes away (``| head``) raises ``OutputClosed``, which the CLI ends quietly on.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any, NamedTuple, Sequence, TextIO


class View(NamedTuple):
    """One record as the command shows it."""

    fields: dict[str, Any]  # its JSON object: the CLI's schema, not the wire's
    row: dict[str, str]  # its cells in a table, by column
    text: str | None = None  # its text shown alone; None: a table of its one row


class Shown(NamedTuple):
    """What a command shows, and how it ended."""

    views: list[View]
    columns: tuple[str, ...] | None = None  # a listing: a table of these; None: one record
    status: int = 0  # the exit status it asks for
    complaint: str = ""  # why that status, said on stderr after the records


class OutputClosed(Exception):
    """Whoever read our output has gone (a closed pipe): nothing more can be shown."""


def table(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> str:
    """``rows`` aligned under upper-case column names."""
    cells = [[row[c] for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


class Output:
    """Where a run of the command prints, for one host or several; safe across threads."""

    def __init__(self, *, json_mode: bool, hosts: Sequence[str] = ("",),
                 together: bool = False, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.several = len(hosts) > 1
        # Lines of hosts followed at once carry the host, padded so the lines align.
        self._prefix_width = max(map(len, hosts)) if together and self.several else 0
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self._document: list[dict[str, Any]] | None = None  # several hosts' JSON, at the end
        self._lock = threading.Lock()
        self._stopped = False

    def header(self, host: str) -> None:
        """Start ``host``'s part of a text output of several hosts."""
        if self.several and not self.json_mode:
            self._write("== {}\n".format(host))

    def show(self, host: str, shown: Shown) -> None:
        """Print what a command on ``host`` shows."""
        if self.json_mode:
            objects = [view.fields for view in shown.views]
            if self.several:
                with self._lock:
                    self._document = (self._document or []) + [
                        {"host": host, **fields} for fields in objects]
                return
            document: Any = objects if shown.columns is not None else objects[0]
            self._write(json.dumps(document, indent=2) + "\n")
        elif shown.columns is not None:
            self._write(table([view.row for view in shown.views], shown.columns) + "\n")
        else:
            for view in shown.views:
                self._write((view.text if view.text is not None
                             else table([view.row], list(view.row))) + "\n")

    def line(self, host: str, text: str, live: bool = False) -> None:
        """Print a line of a log; ``live`` (a follow) sends it at once."""
        if self._prefix_width:
            text = "{} | {}".format(host.ljust(self._prefix_width), text)
        self._write(text + "\n", flush=live)

    def error(self, host: str, message: str) -> None:
        """Say on stderr what went wrong on ``host`` ("" for this machine)."""
        with self._lock:
            if self._stopped:
                return
            self._flush()  # what stdout holds came first: keep it above the error
            where = "{}: ".format(host) if host else ""
            self._stderr.write("vzmaster: {}{}\n".format(where, message))
            self._stderr.flush()

    def finish(self) -> None:
        """Print what waits for the end (several hosts' JSON document) and flush."""
        if self._document is not None:  # not for commands that show no records
            self._write(json.dumps(self._document, indent=2) + "\n")
        with self._lock:
            self._flush()

    def stop(self) -> None:
        """Print nothing more from any thread (interrupted: only the main thread speaks)."""
        with self._lock:
            self._stopped = True

    def _write(self, text: str, flush: bool = False) -> None:
        with self._lock:
            if self._stopped:
                return
            try:
                self._stdout.write(text)
                if flush:
                    self._stdout.flush()
            except BrokenPipeError as exc:
                self._stopped = True
                raise OutputClosed() from exc

    def _flush(self) -> None:
        try:
            self._stdout.flush()
        except BrokenPipeError as exc:
            self._stopped = True
            raise OutputClosed() from exc


class Call(NamedTuple):
    """One subcommand on one host: what it gets beside the node."""

    args: argparse.Namespace
    host: str  # as given on the command line; "" for build and inspect
    output: Output

    def line(self, text: str) -> None:
        """Print a line of a log; at once when following it."""
        self.output.line(self.host, text, live=bool(getattr(self.args, "follow", False)))


class ProgressBar:
    """A one-line progress bar on a terminal; silent when not on one."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.first: int | None = None
        self.drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        """Redraw (at most ten times a second, and at the end)."""
        now = time.monotonic()
        if self.first is None:
            self.first = done  # resumed uploads start above zero; rate counts new bytes
        if not self.enabled or (now - self.drawn < 0.1 and done < total):
            return
        self.drawn = now
        fraction = done / total if total else 1.0
        rate = (done - self.first) / max(now - self.started, 1e-6)
        eta = (total - done) / rate if rate > 0 else 0.0
        bar = "#" * int(fraction * 30)
        self.stream.write("\r{} {:3.0f}% |{:<30}| {:.1f}/{:.1f} MB {:.0f} MB/s ETA {:.0f}s ".format(
            self.label, fraction * 100, bar, done / 1e6, total / 1e6, rate / 1e6, eta))
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
