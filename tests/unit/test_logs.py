"""Container logs: rotation by rename, copytruncate under a live writer, bounds,
tail and cursors across generations, the follower, the pump."""

import errno
import os
import pickle
import random
import subprocess
import sys
import time
import types

import pytest

from vzslave import logs
from vzslave.logs import Cursor, Follower, LogPump, enforce, read_from, rotate, tail, trim

KIB = 1024
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def log(tmp_path):
    """The path of a container log in a fresh logs directory."""
    return str(tmp_path / "app.log")


def write(path, data, mode="ab"):
    with open(path, mode) as out:
        out.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def numbered(start, stop, width=0):
    return b"".join(b"%0*d\n" % (width, i) for i in range(start, stop))


def chain(path, keep):
    """The whole log, oldest generation first."""
    return b"".join(read(logs.generation(path, n)) for n in range(keep, -1, -1)
                    if os.path.exists(logs.generation(path, n)))


def numbers(data):
    return [int(line) for line in data.splitlines()]


def generation_sizes(path, keep):
    return [os.path.getsize(logs.generation(path, n)) for n in range(keep + 1)
            if os.path.exists(logs.generation(path, n))]


def test_a_cursor_is_a_pair_with_named_fields():
    cursor = Cursor(inode=7, offset=42)
    assert (cursor.inode, cursor.offset) == cursor == (7, 42)
    assert repr(cursor) == "Cursor(inode=7, offset=42)"
    assert pickle.loads(pickle.dumps(cursor)) == cursor


# rotate


def test_rotation_by_rename_keeps_keep_generations_newest_first(log):
    for i in range(5):
        write(log, b"run %d\n" % i, "wb")
        assert rotate(log, keep=3)
    assert [read(log + "." + str(n)) for n in (1, 2, 3)] == [b"run 4\n", b"run 3\n", b"run 2\n"]
    assert not os.path.exists(log + ".4") and not os.path.exists(log)


def test_rotation_leaves_a_log_at_or_below_max_bytes_alone(log):
    write(log, b"x" * 100)
    assert not rotate(log, keep=3, max_bytes=100)
    assert read(log) == b"x" * 100


def test_rotation_of_a_missing_log_does_nothing(log):
    assert not rotate(log, keep=3)


def test_rotation_with_keep_zero_deletes_the_log(log):
    write(log, b"old\n")
    assert rotate(log, keep=0)
    assert os.listdir(os.path.dirname(log)) == []


def test_a_rotated_generation_keeps_only_the_last_max_bytes_of_an_oversized_log(log):
    """When an app without a monitor wrote 600 times log_max between two spawns, the
    rotation by rename keeps only the tail in the new .1: no generation exceeds max."""
    write(log, numbered(0, 100000, width=6))  # 700 KB, 7 bytes a line
    assert rotate(log, keep=2, max_bytes=1000)
    assert read(log + ".1") == numbered(99858, 100000, width=6)  # 994 bytes: whole lines


def test_rotation_with_a_huge_keep_touches_only_the_generations_there_are(log,
                                                                         monkeypatch):
    """When keep is absurd (10**12), rotation costs what the files there are cost: no
    loop over keep (which made every later session spin)."""
    write(log + ".1", b"one\n")
    write(log, b"now\n")
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(logs.os, "rename", lambda *a: renames.append(a) or real_rename(*a))
    rotate(log, keep=10 ** 12)
    enforce(log, max_bytes=1 << 20, keep=10 ** 12)
    assert tail(log, lines=10, keep=10 ** 12)[0] == b"one\nnow\n"
    assert len(renames) == 2  # .1 -> .2, then the log -> .1: one per file there is
    assert read(log + ".1") == b"now\n" and read(log + ".2") == b"one\n"


# trim


def test_trim_does_nothing_at_or_below_max_bytes(log):
    write(log, b"x" * 100)
    assert not trim(log, max_bytes=100, keep=2)
    assert read(log) == b"x" * 100 and not os.path.exists(log + ".1")


def test_trim_copies_the_last_max_bytes_from_a_line_start_and_empties_the_file(log):
    write(log, numbered(0, 1000, width=4))  # 5 bytes a line
    assert trim(log, max_bytes=23, keep=2)
    assert read(log + ".1") == b"0996\n0997\n0998\n0999\n"
    assert read(log) == b""


def test_trim_shifts_the_older_generations(log):
    write(log + ".1", b"older\n")
    write(log, b"x\n" * 50)
    trim(log, max_bytes=10, keep=2)
    assert read(log + ".2") == b"older\n"


def test_an_o_append_writer_goes_on_at_the_start_of_the_trimmed_file(log):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, numbered(0, 100))
        trim(log, max_bytes=50, keep=1)
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert read(log) == b"after\n"
    assert numbers(read(log + ".1"))[-1] == 99


def test_a_flood_with_repeated_trims_stays_within_the_cap_and_in_order(log):
    max_bytes, keep = 256 * KIB, 3
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    written = 0
    try:
        for start in range(0, 2_600_000, 8000):  # 8 bytes a line: 20.8 MB
            written += os.write(fd, numbered(start, start + 8000, width=7))
            enforce(log, max_bytes, keep)
            assert sum(generation_sizes(log, keep)) <= (keep + 1) * max_bytes
    finally:
        os.close(fd)
    assert written > 20 * 1000 ** 2
    files = [numbers(read(logs.generation(log, n))) for n in range(keep, -1, -1)]
    for kept in files:  # a trim keeps the last max_bytes: whole runs of lines, no holes
        first = kept[0] if kept else 0
        assert kept == list(range(first, first + len(kept)))
    flat = [n for kept in files for n in kept]
    assert flat == sorted(flat) and flat[-1] == 2_599_999


def test_trims_under_a_real_writer_lose_at_most_a_few_lines_and_never_reorder(log):
    """The window between copy and truncation loses lines; nothing else goes wrong."""
    max_bytes, keep = 256 * KIB, 2
    # Lines of 8 bytes never straddle a page, so the kernel never shows half of one.
    writer = subprocess.Popen(["/bin/sh", "-c", 'i=0; while :; do i=$((i+1)); '
                               'printf "%07d\\n" $i; done >>"$1"', "sh", log])
    try:
        trims = 0
        while trims < 20:
            assert writer.poll() is None
            if trim(log, max_bytes, keep):
                trims += 1
                older, newer = numbers(read(log + ".1")), numbers(read(log))
                assert os.path.getsize(log + ".1") <= max_bytes
                if older and newer:
                    assert newer[0] > older[-1]  # the writer went on in the emptied file
            else:
                time.sleep(0.01)
    finally:
        writer.kill()
        writer.wait()
    data = chain(log, keep)
    assert b"\0" not in data
    seen = numbers(data)
    assert seen == sorted(set(seen))


def test_trim_ends_a_line_it_cuts_with_a_newline(log):
    write(log, b"x\n" * 50 + b"half a li")
    trim(log, max_bytes=20, keep=1)
    assert read(log + ".1").endswith(b"x\nhalf a li\n")


def test_trim_on_a_full_disk_still_empties_the_file_and_says_why(log, monkeypatch):
    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(logs, "_copy", no_space)
    write(log, b"x\n" * 50)
    with pytest.raises(OSError) as raised:
        trim(log, max_bytes=10, keep=1)
    assert raised.value.errno == errno.ENOSPC and read(log) == b""


def test_trim_with_keep_zero_only_empties_the_file(log):
    write(log, b"x\n" * 50)
    assert trim(log, max_bytes=10, keep=0)
    assert os.listdir(os.path.dirname(log)) == ["app.log"] and read(log) == b""


def test_trim_of_a_missing_log_does_nothing(log):
    assert not trim(log, max_bytes=10, keep=2)


def test_a_symlinked_log_is_refused_with_an_os_error(log, tmp_path):
    write(str(tmp_path / "elsewhere"), b"x" * 100)
    os.symlink(str(tmp_path / "elsewhere"), log)
    with pytest.raises(OSError):
        trim(log, max_bytes=10, keep=2)


# enforce


def test_enforce_cuts_every_oversized_generation_not_only_the_current_file(log):
    write(log + ".2", numbered(0, 1000, width=4))
    write(log + ".1", numbered(1000, 2000, width=4))
    write(log, b"small\n")
    enforce(log, max_bytes=20, keep=3)
    assert read(log + ".2") == numbered(996, 1000, width=4)
    assert read(log + ".1") == numbered(1996, 2000, width=4)
    assert read(log) == b"small\n"


def test_enforce_deletes_generations_beyond_keep(log):
    for n in range(1, 6):
        write(logs.generation(log, n), b"gen\n")
    enforce(log, max_bytes=100, keep=2)
    assert sorted(os.listdir(os.path.dirname(log))) == ["app.log.1", "app.log.2"]


def test_enforce_cuts_an_oversized_generation_to_its_last_lines(log):
    write(log + ".1", numbered(0, 1000, width=4))
    enforce(log, max_bytes=12, keep=2)
    assert read(log + ".1") == b"0998\n0999\n"


def test_enforcing_all_asks_limits_only_of_chains_with_a_big_file(tmp_path):
    """When upkeep runs at every session, small logs cost a stat and no settings read."""
    write(str(tmp_path / "big.log.2"), numbered(0, 1000, width=4))
    write(str(tmp_path / "small.log"), b"x\n")
    write(str(tmp_path / "notes.txt"), numbered(0, 1000, width=4))
    asked = []

    def limits(name):
        asked.append(name)
        return 10, 1

    logs.enforce_all(str(tmp_path), limits, past=100)
    assert asked == ["big"]
    assert sorted(os.listdir(str(tmp_path))) == ["notes.txt", "small.log"]


def test_enforcing_all_in_a_missing_directory_does_nothing(tmp_path):
    logs.enforce_all(str(tmp_path / "gone"), lambda name: pytest.fail("asked"), past=0)


def test_removing_a_chain_removes_every_numbered_generation_and_nothing_else(log, tmp_path):
    for name in ("app.log", "app.log.1", "app.log.07", "app.log.x", "apple.log", "app.log2"):
        write(str(tmp_path / name), b"x")
    logs.remove_chain(log)
    assert sorted(os.listdir(str(tmp_path))) == ["app.log.x", "app.log2", "apple.log"]


def test_enforce_bounds_the_whole_log(log):
    write(log, b"c\n" * 5000)
    write(log + ".1", b"b\n" * 5000)
    write(log + ".2", b"a\n" * 5000)
    enforce(log, max_bytes=1000, keep=2)
    assert sum(generation_sizes(log, 2)) <= 3 * 1000


# tail


def test_tail_reaches_back_into_rotated_generations(log):
    write(log + ".2", b"1\n2\n")
    write(log + ".1", b"3\n4\n")
    write(log, b"5\n")
    data, cursor = tail(log, 4, keep=2)
    assert data == b"2\n3\n4\n5\n"
    assert cursor == Cursor(os.stat(log).st_ino, 2)


def test_tail_counts_an_unfinished_last_line(log):
    write(log, b"a\nb\nc")
    assert tail(log, 2, keep=0)[0] == b"b\nc"


def test_tail_of_zero_lines_is_empty_with_a_cursor_at_the_end(log):
    write(log, b"a\nb\n")
    assert tail(log, 0, keep=1) == (b"", Cursor(os.stat(log).st_ino, 4))


def test_tail_of_a_missing_log_is_empty_with_the_zero_cursor(log):
    assert tail(log, 10, keep=3) == (b"", Cursor(0, 0))


def test_tail_of_more_lines_than_exist_is_the_whole_log(log):
    write(log + ".1", b"old\n")
    write(log, b"new\n")
    assert tail(log, 100, keep=3)[0] == b"old\nnew\n"


def test_tail_returns_at_most_max_bytes_out(log):
    write(log, b"x" * 5000 + b"\n")
    assert tail(log, 1, keep=0, max_bytes_out=100)[0] == b"x" * 99 + b"\n"


def test_tail_matches_a_naive_tail_across_block_boundaries(log):
    rng = random.Random(1)
    lines = [b"x" * rng.choice([0, 1, 100, 65535, 65536, 70000]) + b"\n" for _ in range(40)]
    write(log, b"".join(lines))
    for count in (1, 2, 3, 7, 39, 40, 41):
        expected = b"".join(lines[-count:])
        assert tail(log, count, keep=0, max_bytes_out=10 ** 8)[0] == expected


# read_from


def test_read_from_the_zero_cursor_starts_at_the_beginning(log):
    write(log, b"hello\n")
    assert read_from(log, Cursor(0, 0), 100) == (b"hello\n", Cursor(os.stat(log).st_ino, 6))


def test_read_from_an_unknown_inode_starts_at_the_beginning(log):
    write(log, b"hello\n")
    assert read_from(log, Cursor(12345678, 3), 100)[0] == b"hello\n"


def test_read_from_a_missing_log_is_empty(log):
    assert read_from(log, Cursor(0, 0), 100) == (b"", Cursor(0, 0))


def test_read_from_finishes_a_renamed_file_then_starts_the_new_one(log):
    write(log, b"one\ntwo\n")
    _, cursor = read_from(log, Cursor(0, 0), 4)
    write(log, b"three\n")
    rotate(log, keep=2)
    write(log, b"four\n")
    data, cursor = read_from(log, cursor, 100)
    assert data == b"two\nthree\nfour\n"
    assert cursor == Cursor(os.stat(log).st_ino, 5)


def test_read_from_in_small_steps_across_two_rotations_sees_every_byte_once(log):
    write(log, b"A" * 10)
    cursor = read_from(log, Cursor(0, 0), 3)[1]
    rotate(log, keep=3)
    write(log, b"B" * 10)
    rotate(log, keep=3)
    write(log, b"C" * 10)
    got = b"AAA"
    while True:
        data, cursor = read_from(log, cursor, 3)
        if not data:
            break
        got += data
    assert got == b"A" * 10 + b"B" * 10 + b"C" * 10


def test_read_from_restarts_at_zero_after_a_trim(log):
    write(log, b"x\n" * 100)
    cursor = read_from(log, Cursor(0, 0), 1000)[1]
    trim(log, max_bytes=10, keep=1)
    write(log, b"new\n")
    assert read_from(log, cursor, 100) == (b"new\n", Cursor(cursor.inode, 4))


# Follower


def test_a_follower_reads_only_what_is_new(log):
    write(log, b"old\n")
    follower = Follower(log, tail(log, 10, keep=0)[1], keep=0)
    try:
        assert follower.read(100) == b""
        write(log, b"new\n")
        assert follower.read(100) == b"new\n"
        assert follower.cursor == Cursor(os.stat(log).st_ino, 8)
    finally:
        follower.close()


def test_a_follower_waits_for_a_log_that_does_not_exist_yet(log):
    follower = Follower(log, Cursor(0, 0), keep=1)
    try:
        assert follower.read(100) == b""
        write(log, b"first\n")
        assert follower.read(100) == b"first\n"
    finally:
        follower.close()


def test_a_follower_reads_the_end_of_a_file_renamed_and_gone(log):
    write(log, b"start\n")
    follower = Follower(log, Cursor(0, 0), keep=1)
    try:
        assert follower.read(100) == b"start\n"
        write(log, b"end\n")
        rotate(log, keep=1)
        write(log, b"next\n")
        rotate(log, keep=1)  # the file the follower reads is now deleted
        write(log, b"last\n")
        assert follower.read(100) == b"end\nnext\nlast\n"
    finally:
        follower.close()


def test_a_follower_restarts_at_zero_after_a_trim(log):
    write(log, b"x\n" * 100)
    follower = Follower(log, Cursor(0, 0), keep=1)
    try:
        follower.read(1000)
        trim(log, max_bytes=10, keep=1)
        write(log, b"new\n")
        assert follower.read(100) == b"new\n"
    finally:
        follower.close()


PRODUCER = """
import sys
from vzslave.logs import LogPump
pump = LogPump(sys.argv[1], max_bytes=int(sys.argv[4]), keep=int(sys.argv[2]))
for start in range(0, int(sys.argv[3]), 50):
    pump.write(b"".join(b"%d\\n" % i for i in range(start, start + 50)))
pump.close()
"""


def test_a_follower_sees_every_line_once_and_in_order_across_pump_rotations(log):
    """When rotations went on while the follower looked for the next file, it skipped
    files: small files make rotations frequent enough to catch that."""
    total, keep = 50000, 500  # enough generations that a slow reader loses nothing
    write(log, b"")
    follower = Follower(log, Cursor(0, 0), keep=keep)
    writer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, log, str(keep), str(total), "1024"], cwd=ROOT)
    got = b""
    try:
        deadline = time.monotonic() + 60  # a safety net, not a measurement
        while not got.endswith(b"\n%d\n" % (total - 1)) and time.monotonic() < deadline:
            got += follower.read(7000)
    finally:
        writer.wait()
        follower.close()
    assert os.path.exists(log + ".3")  # at least 3 rotations happened
    assert numbers(got) == list(range(total))


# LogPump


def test_the_pump_never_lets_a_file_pass_max_bytes(log):
    rng = random.Random(2)
    pump = LogPump(log, max_bytes=1000, keep=1000)
    sent = b""
    try:
        for _ in range(500):
            data = b"".join(b"y" * rng.randrange(0, 300) + b"\n" for _ in range(rng.randrange(4)))
            pump.write(data)
            sent += data
            directory = os.path.dirname(log)
            assert max(os.path.getsize(os.path.join(directory, name))
                       for name in os.listdir(directory)) <= 1000
    finally:
        pump.close()
    assert chain(log, 1000) == sent


def test_the_pump_keeps_lines_whole_when_they_fit(log):
    pump = LogPump(log, max_bytes=10, keep=2)
    try:
        pump.write(b"aaaa\nbbbb\ncccc\n")
    finally:
        pump.close()
    assert (read(log + ".1"), read(log)) == (b"aaaa\nbbbb\n", b"cccc\n")


def test_the_pump_cuts_a_line_longer_than_a_file_at_the_cap(log):
    pump = LogPump(log, max_bytes=4, keep=3)
    try:
        pump.write(b"0123456789\n")
    finally:
        pump.close()
    assert [read(logs.generation(log, n)) for n in (2, 1, 0)] == [b"0123", b"4567", b"89\n"]


def test_the_pump_goes_on_after_an_existing_log(log):
    write(log, b"before\n")
    pump = LogPump(log, max_bytes=100, keep=1)
    try:
        pump.write(b"after\n")
    finally:
        pump.close()
    assert read(log) == b"before\nafter\n"


@pytest.fixture
def fake_syslog(monkeypatch):
    """A syslog module that records its calls."""
    fake = types.SimpleNamespace(LOG_DAEMON=3 << 3, LOG_INFO=6, calls=[])
    fake.openlog = lambda ident, option, facility: fake.calls.append(("open", ident, facility))
    fake.syslog = lambda priority, message: fake.calls.append(("log", priority, message))
    fake.closelog = lambda: fake.calls.append(("close",))
    monkeypatch.setitem(sys.modules, "syslog", fake)
    return fake


def test_the_pump_sends_complete_lines_to_syslog(log, fake_syslog):
    pump = LogPump(log, max_bytes=1000, keep=1, syslog_ident="vz/app")
    pump.write(b"one\r\ntw")
    assert fake_syslog.calls == [("open", "vz/app", fake_syslog.LOG_DAEMON),
                                 ("log", fake_syslog.LOG_INFO, "one")]
    pump.write(b"o\n")
    assert fake_syslog.calls[-1] == ("log", fake_syslog.LOG_INFO, "two")
    pump.close()
    assert read(log) == b"one\r\ntwo\n"


def test_the_pump_sends_an_unfinished_last_line_to_syslog_at_close(log, fake_syslog):
    pump = LogPump(log, max_bytes=1000, keep=1, syslog_ident="vz/app")
    pump.write(b"bye")
    pump.close()
    assert fake_syslog.calls[-2:] == [("log", fake_syslog.LOG_INFO, "bye"), ("close",)]


def test_the_pump_does_not_load_syslog_unless_asked(log, monkeypatch):
    monkeypatch.delitem(sys.modules, "syslog", raising=False)
    LogPump(log, max_bytes=10, keep=1).close()
    assert "syslog" not in sys.modules


# import cost


def test_importing_the_module_loads_nothing_heavy():
    """The runner imports it at every spawn."""
    code = ("import os, sys; before = set(sys.modules); import vzslave.logs; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, check=True,
                            stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    # vzslave.runio: the runner's leaf (write_all), which the runner has loaded already.
    assert set(loaded) <= {"vzslave", "vzslave.logs", "vzslave.runio", "errno"}
