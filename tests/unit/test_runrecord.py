"""The run record: its text, written by path or through a held fd, read back."""

import os

from vzslave.runrecord import (
    RUN_KEYS,
    read_run_record,
    record_number,
    render_run_record,
    store_run_record,
    write_run_record,
)


def test_the_run_record_round_trips_with_every_key(tmp_path):
    record = {key: "v " + key for key in RUN_KEYS}
    record["last_error"] = "two\nlines"
    path = str(tmp_path / "run")
    write_run_record(path, record)
    back = read_run_record(path)
    assert back == dict(record, last_error="two lines")
    assert list(back) == list(RUN_KEYS)
    assert os.listdir(str(tmp_path)) == ["run"]


def test_a_missing_run_record_reads_as_empty(tmp_path):
    assert read_run_record(str(tmp_path / "run")) == {}


def test_the_text_has_one_line_per_key_in_order_and_blanks_for_missing_ones():
    text = render_run_record({"state": "running", "pid": "12", "unknown": "x"}).decode()
    lines = text.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == list(RUN_KEYS)
    assert lines[:3] == ["pid 12", "ticks ", "state running"] and "unknown" not in text


def test_a_record_stored_through_a_held_fd_is_rewritten_in_place(tmp_path):
    """When the runner is in the rootfs, it writes through the fd it opened before."""
    path = str(tmp_path / "run")
    write_run_record(path, {"state": "running", "last_error": "x" * 100})
    inode = os.stat(path).st_ino
    fd = os.open(path, os.O_WRONLY)
    try:
        assert store_run_record("/nowhere/run", {"state": "failed"}, fd)
    finally:
        os.close(fd)
    assert os.stat(path).st_ino == inode
    assert read_run_record(path) == dict({key: "" for key in RUN_KEYS}, state="failed")


def test_a_record_stored_by_path_replaces_the_file(tmp_path):
    path = str(tmp_path / "run")
    write_run_record(path, {"state": "running"})
    inode = os.stat(path).st_ino
    assert store_run_record(path, {"state": "exited"})
    assert read_run_record(path)["state"] == "exited" and os.stat(path).st_ino != inode


def test_a_record_that_cannot_be_stored_says_so(tmp_path):
    assert not store_run_record(str(tmp_path / "gone" / "run"), {"state": "failed"})


def test_numbers_absent_or_garbled_read_as_zero():
    record = {"pid": "123", "spawns": "", "streak": "x1"}
    assert [record_number(record, key) for key in ("pid", "spawns", "streak", "ticks")] == [
        123, 0, 0, 0]
