"""vz's inittab entries: the pure edits, the locked atomic file, and init's reload."""

import os
import signal
import stat
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import requires_root
from vzslave import fs, inittab
from vzslave.errors import BadNameError, BusyError, InittabError, PermissionDeniedError
from vzslave.inittab import (
    Dialect,
    Entry,
    InittabFile,
    add_entry,
    allocate_id,
    dialect_for,
    parse,
    reload_init,
    remove_entry,
    render_entry,
    restore_entry,
    used_ids,
)

L = "/var/lib/vz/bin/vzrun"
SYSV, BUSYBOX = Dialect.SYSV, Dialect.BUSYBOX
ADMIN = (
    "# /etc/inittab: init(8) configuration.\n"
    "id:2:initdefault:\n"
    "\n"
    "si::sysinit:/etc/init.d/rcS\n"
    "1:2345:respawn:/sbin/getty 38400 tty1\n"
)


# -- dialects ---------------------------------------------------------------------

def test_dialect_for_maps_sysvinit_and_busybox():
    assert dialect_for("sysvinit") is SYSV
    assert dialect_for("busybox") is BUSYBOX


@pytest.mark.parametrize("init", ["systemd", "upstart", "openrc", "unknown"])
def test_dialect_for_refuses_inits_that_ignore_inittab_naming_the_fallback(init):
    with pytest.raises(InittabError, match=r"PID 1 is {}.*initscripts".format(init)):
        dialect_for(init)


# -- rendering ----------------------------------------------------------------------

def test_renders_a_sysv_respawn_line_in_the_multi_user_levels():
    assert render_entry(SYSV, L, "web", "v000") == "v000:2345:respawn:{} web".format(L)


def test_renders_a_busybox_line_with_empty_tty_and_levels():
    assert render_entry(BUSYBOX, L, "web", "ignored") == "::respawn:{} web".format(L)


def test_refuses_a_sysv_command_over_127_characters_saying_how_long_and_the_fix():
    launcher = "/" + "r" * 110 + "/bin/vzrun"  # 121 + " " + 6 = 128
    with pytest.raises(InittabError, match=r"128 characters.*shorter --root or container name"):
        render_entry(SYSV, launcher, "abcdef", "v000")


def test_accepts_a_sysv_command_of_exactly_127_characters():
    launcher = "/" + "r" * 109 + "/bin/vzrun"
    assert len(render_entry(SYSV, launcher, "abcdef", "v000").split(":", 3)[3]) == 127


def test_busybox_has_no_command_length_limit():
    launcher = "/" + "r" * 300 + "/vzrun"
    assert render_entry(BUSYBOX, launcher, "web", "").endswith(launcher + " web")


@pytest.mark.parametrize("char", list(inittab.SHELL_CHARS))
def test_refuses_a_launcher_with_shell_characters_in_either_dialect(char):
    for dialect in (SYSV, BUSYBOX):
        with pytest.raises(InittabError, match="/bin/sh"):
            render_entry(dialect, "/var/lib/v{}z/vzrun".format(char), "web", "v000")


def test_refuses_a_hash_in_the_command_which_busybox_reads_as_a_comment():
    for dialect in (SYSV, BUSYBOX):
        with pytest.raises(InittabError, match="cut at '#'"):
            render_entry(dialect, "/var/lib/v#z/vzrun", "web", "v000")


@pytest.mark.parametrize("launcher", ["/var/lib/my vz/vzrun", "/var/lib/vz\t/vzrun",
                                      "/var/lib/vz\n/vzrun", "/var/lib/vz\x7f/vzrun"])
def test_refuses_a_launcher_init_would_split(launcher):
    with pytest.raises(InittabError, match="blanks or control"):
        render_entry(SYSV, launcher, "web", "v000")


def test_refuses_a_relative_launcher_as_init_runs_from_the_root():
    with pytest.raises(InittabError, match="absolute --root"):
        render_entry(SYSV, "vz/bin/vzrun", "web", "v000")


@pytest.mark.parametrize("entry_id", ["", "v0000", "v-0", "v 0", "é"])
def test_refuses_sysv_ids_that_are_not_1_to_4_letters_or_digits(entry_id):
    with pytest.raises(InittabError, match="not 1 to 4"):
        render_entry(SYSV, L, "web", entry_id)


def test_refuses_a_name_that_fails_validation():
    with pytest.raises(BadNameError):
        render_entry(SYSV, L, "../x", "v000")


# -- parsing -----------------------------------------------------------------------

def test_parse_finds_active_entries_of_both_shapes_with_their_ids_and_lines():
    text = ADMIN + "v000:2345:respawn:{0} web\n::respawn:{0} db\n".format(L)
    assert parse(text, L) == [
        Entry("web", "v000", "active", 5, "v000:2345:respawn:{} web".format(L)),
        Entry("db", "", "active", 6, "::respawn:{} db".format(L)),
    ]


@pytest.mark.parametrize("prefix", ["#", "# ", "##", "#  # ", "  #\t#"])
def test_parse_reports_an_entry_commented_out_with_hashes_and_blanks(prefix):
    text = "{}v000:2345:respawn:{} web\n".format(prefix, L)
    assert [(e.name, e.id, e.state) for e in parse(text, L)] == [("web", "v000", "commented")]


@pytest.mark.parametrize("action", ["off", "once", "wait", "ondemand"])
def test_parse_reports_an_entry_whose_action_the_admin_changed_as_off(action):
    text = "v000:2345:{}:{} web\n".format(action, L)
    assert [e.state for e in parse(text, L)] == ["off"]


def test_parse_reads_the_respawn_action_case_insensitively_like_sysvinit():
    assert [e.state for e in parse("v000:2345:ReSpawn:{} web\n".format(L), L)] == ["active"]


def test_parse_accepts_the_leading_and_trailing_blanks_init_ignores():
    assert [e.name for e in parse(" \tv000:2345:respawn:{} web \t\n".format(L), L)] == ["web"]


@pytest.mark.parametrize("process", [
    L + "x web", L + " web extra", L + "  web", L + " ../web", "/other/vzrun web", L,
    L + " web\r",
])
def test_parse_ignores_lines_whose_process_is_not_launcher_and_one_name(process):
    assert parse("v000:2345:respawn:{}\n".format(process), L) == []


def test_parse_ignores_admin_lines_and_comments():
    assert parse(ADMIN + "# vz runs containers with {} NAME\n".format(L), L) == []


def test_parse_counts_lines_at_newlines_only():
    text = "a\r\nb\x0cc\x85d\rkeep\nv000:2345:respawn:{} web".format(L)
    assert [(e.line_index, e.line) for e in parse(text, L)] == [
        (2, "v000:2345:respawn:{} web".format(L))]


def test_used_ids_counts_active_commented_and_admin_lines():
    text = ADMIN + "#v001:2345:respawn:{} web\n## v00z:2:off:/bin/x\n\n#\n".format(L)
    # "# /etc/inittab: ..." counts too: avoiding a few extra ids costs nothing.
    assert used_ids(text) == {"/etc/inittab", "id", "si", "1", "v001", "v00z"}


# -- ids ---------------------------------------------------------------------------

def test_allocate_id_starts_at_v000():
    assert allocate_id(set(), set()) == "v000"


def test_allocate_id_skips_used_and_avoided_ids():
    assert allocate_id({"v000", "v002"}, {"v001"}) == "v003"


def test_allocate_id_counts_digits_then_lowercase_letters():
    used = {"v00" + c for c in "0123456789"}
    assert allocate_id(used, set()) == "v00a"
    assert allocate_id(used | {"v00" + c for c in "abcdefghijklmnopqrstuvwxyz"}, set()) == "v010"


def test_allocate_id_raises_when_every_id_is_taken():
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    every = {"v" + a + b + c for a in digits for b in digits for c in digits}
    assert allocate_id(every - {"vzzz"}, set()) == "vzzz"
    with pytest.raises(InittabError, match="v000 to vzzz"):
        allocate_id(every, set())


# -- adding, removing, restoring ---------------------------------------------------

def test_add_entry_appends_our_line():
    assert add_entry(ADMIN, SYSV, L, "web", "v000") == \
        ADMIN + "v000:2345:respawn:{} web\n".format(L)


def test_add_entry_ends_an_unterminated_last_line_first():
    assert add_entry("x:1:off:/bin/x", BUSYBOX, L, "web", "") == \
        "x:1:off:/bin/x\n::respawn:{} web\n".format(L)


def test_add_entry_to_an_empty_file_is_one_line():
    assert add_entry("", SYSV, L, "web", "v000") == "v000:2345:respawn:{} web\n".format(L)


@pytest.mark.parametrize("existing", ["v000:2345:respawn:{} web", "# v000:2345:respawn:{} web",
                                      "v000:2345:off:{} web", "::respawn:{} web"])
def test_add_entry_refuses_when_an_entry_for_the_name_exists_in_any_state(existing):
    with pytest.raises(InittabError, match="already has"):
        add_entry(existing.format(L) + "\n", SYSV, L, "web", "v001")


def test_add_entry_refuses_an_id_an_admin_line_uses_even_commented_out():
    with pytest.raises(InittabError, match="'v000' is already used"):
        add_entry("#v000:2345:respawn:/bin/other\n", SYSV, L, "web", "v000")


def test_busybox_add_refuses_after_a_line_ending_in_a_backslash():
    with pytest.raises(InittabError, match="backslash"):
        add_entry("::sysinit:/bin/echo a \\\n", BUSYBOX, L, "web", "")


def test_sysv_add_ignores_backslashes_as_sysvinit_does():
    assert add_entry("x:1:off:/bin/echo \\\n", SYSV, L, "web", "v000").endswith(" web\n")


def test_remove_entry_removes_exactly_our_lines_for_the_name_in_every_state():
    ours = ["v000:2345:respawn:{} web\n", "#v000:2345:respawn:{} web\n",
            "v009:2345:off:{} web\n", "::respawn:{} web"]
    others = ["v001:2345:respawn:{} db\r\n", "#v002:2345:respawn:{} cache\n"]
    mixed = [ADMIN, ours[0], others[0], ours[1], "keep\r\n", ours[2], others[1], ours[3]]
    text = "".join(part.format(L) for part in mixed)
    expected = "".join(part.format(L) for part in [ADMIN, others[0], "keep\r\n", others[1]])
    assert remove_entry(text, L, "web") == expected


def test_remove_entry_without_an_entry_returns_the_text_unchanged():
    assert remove_entry(ADMIN + "tail", L, "web") == ADMIN + "tail"


def test_restore_entry_replaces_a_commented_line_in_place_keeping_its_ending():
    text = "a\n##  v000:2345:respawn:{} web\nb".format(L)
    assert restore_entry(text, SYSV, L, "web", "v000") == \
        "a\nv000:2345:respawn:{} web\nb".format(L)


def test_restore_entry_replaces_an_off_line_and_an_unterminated_last_line():
    text = "a\nv000:2345:off:{} web".format(L)
    assert restore_entry(text, SYSV, L, "web", "v000") == "a\nv000:2345:respawn:{} web".format(L)


def test_restore_entry_keeps_one_line_when_the_name_had_several():
    text = "#v000:2345:respawn:{0} web\nx\n#v001:2345:respawn:{0} web\n".format(L)
    assert restore_entry(text, SYSV, L, "web", "v001") == "v001:2345:respawn:{} web\nx\n".format(L)


def test_restore_entry_appends_when_there_is_no_entry():
    assert restore_entry(ADMIN, BUSYBOX, L, "web", "") == ADMIN + "::respawn:{} web\n".format(L)


def test_restore_entry_refuses_an_active_entry():
    with pytest.raises(InittabError, match="already has an active"):
        restore_entry("v000:2345:respawn:{} web\n".format(L), SYSV, L, "web", "v000")


def test_restore_entry_refuses_an_id_used_by_another_line():
    text = "#v000:2345:respawn:{} web\nv001:2345:respawn:/bin/x\n".format(L)
    with pytest.raises(InittabError, match="'v001' is already used"):
        restore_entry(text, SYSV, L, "web", "v001")


# -- properties --------------------------------------------------------------------

def _admin_line(raw, ending):
    return raw.replace(b"\n", b"").decode("utf-8", "surrogateescape") + ending


ADMIN_LINES = st.one_of(
    st.builds(_admin_line, st.binary(max_size=40), st.sampled_from(["\n", "\r\n"])),
    st.sampled_from(["\n", "#\n", "# comment: x\n", "id:2:initdefault:\n", "\\\n",
                     "v000:2345:respawn:{} db\n".format(L), "#v001:2345:respawn:{} db\n".format(L),
                     "::respawn:{} cache\r\n".format(L), "v002:2345:off:{} other\n".format(L)]),
)
ADMIN_TEXTS = st.builds(lambda lines, tail: "".join(lines) + tail, st.lists(ADMIN_LINES),
                        st.sampled_from(["", "no newline", "x:1:once:/bin/y\r"]))


def _fresh(text, dialect):
    entry_id = allocate_id(used_ids(text), set())
    if dialect is BUSYBOX and text.rstrip("\n").endswith("\\"):
        text += "x\n"  # BusyBox would join our line to a trailing backslash: refused
    return text, entry_id


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(ADMIN_TEXTS, st.sampled_from([SYSV, BUSYBOX]))
def test_adding_then_removing_gives_back_the_admin_text(text, dialect):
    text, entry_id = _fresh(text, dialect)
    added = add_entry(text, dialect, L, "web", entry_id)
    terminated = text if not text or text.endswith("\n") else text + "\n"
    assert added.startswith(terminated)  # the admin's lines are unchanged
    assert remove_entry(added, L, "web") == terminated


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(ADMIN_TEXTS.filter(lambda t: t.endswith("\n")), st.sampled_from([SYSV, BUSYBOX]))
def test_a_hundred_add_remove_cycles_leave_the_text_byte_identical(text, dialect):
    text, entry_id = _fresh(text, dialect)
    current = text
    for _ in range(100):
        current = remove_entry(add_entry(current, dialect, L, "web", entry_id), L, "web")
    assert current.encode("utf-8", "surrogateescape") == text.encode("utf-8", "surrogateescape")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(ADMIN_TEXTS, st.sampled_from(["#", "# ", "##  "]))
def test_restoring_a_commented_entry_changes_only_its_line(text, prefix):
    text, entry_id = _fresh(text, SYSV)
    terminated = text if not text or text.endswith("\n") else text + "\n"
    commented = terminated + prefix + "{}:2345:respawn:{} web\n".format(entry_id, L)
    assert restore_entry(commented, SYSV, L, "web", entry_id) == \
        add_entry(text, SYSV, L, "web", entry_id)


# -- the file ----------------------------------------------------------------------

def test_reading_a_missing_file_gives_empty_text_locked_or_not(tmp_path):
    tab = InittabFile(str(tmp_path / "inittab"))
    assert tab.read() == ""
    with tab.locked():
        assert tab.read() == ""


def test_writing_a_missing_file_creates_it_0644_whatever_the_umask(tmp_path):
    path = tmp_path / "inittab"
    old = os.umask(0o077)
    try:
        with InittabFile(str(path)).locked() as tab:
            tab.write("a\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"a\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_replaces_the_file_atomically_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "inittab"
    path.write_bytes(b"old\n")
    before = path.stat().st_ino
    with InittabFile(str(path)).locked() as tab:
        tab.write("new\n")
        assert tab.read() == "new\n"
    assert path.read_bytes() == b"new\n"
    assert path.stat().st_ino != before
    assert os.listdir(tmp_path) == ["inittab"]


def test_write_keeps_the_files_mode(tmp_path):
    path = tmp_path / "inittab"
    path.write_bytes(b"old\n")
    os.chmod(path, 0o600)
    with InittabFile(str(path)).locked() as tab:
        tab.write("new\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@requires_root
def test_write_keeps_the_files_owner_and_group(tmp_path):
    path = tmp_path / "inittab"
    path.write_bytes(b"old\n")
    os.chown(path, 1234, 5678)
    os.chmod(path, 0o640)
    with InittabFile(str(path)).locked() as tab:
        tab.write("new\n")
    st_ = path.stat()
    assert (st_.st_uid, st_.st_gid, stat.S_IMODE(st_.st_mode)) == (1234, 5678, 0o640)


def test_write_through_a_symlinked_inittab_keeps_the_symlink(tmp_path):
    real = tmp_path / "real-inittab"
    real.write_bytes(b"old\n")
    link = tmp_path / "inittab"
    link.symlink_to(real.name)
    with InittabFile(str(link)).locked() as tab:
        tab.write("new\n")
    assert link.is_symlink() and real.read_bytes() == b"new\n"


def test_odd_bytes_and_line_endings_survive_a_read_and_write(tmp_path):
    raw = b"caf\xe9:2:off:/bin/\xff\xfe\r\nv\x00x\n\x85tail"
    path = tmp_path / "inittab"
    path.write_bytes(raw)
    with InittabFile(str(path)).locked() as tab:
        text = tab.read()
        tab.write(remove_entry(add_entry(text, SYSV, L, "web", "v000"), L, "web"))
    assert path.read_bytes() == raw + b"\n"


def test_write_outside_locked_is_refused(tmp_path):
    with pytest.raises(RuntimeError):
        InittabFile(str(tmp_path / "inittab")).write("x\n")


def test_the_lock_waits_at_most_the_timeout_then_raises_busy(tmp_path):
    path = tmp_path / "inittab"
    path.write_bytes(b"x\n")
    with InittabFile(str(path)).locked():
        with pytest.raises(BusyError, match=r"stayed locked by \S+ pid {}".format(os.getpid())):
            with InittabFile(str(path), timeout=0.1).locked():
                pass


def test_the_lock_waits_no_longer_than_any_other_lock_by_default(tmp_path, monkeypatch):
    """When another process held the inittab, a request waited 30 s behind it."""
    monkeypatch.setattr(fs, "LOCK_WAIT", 0.1)
    path = tmp_path / "inittab"
    path.write_bytes(b"x\n")
    with InittabFile(str(path)).locked():
        with pytest.raises(BusyError) as caught:
            with InittabFile(str(path)).locked():
                pass
    assert "for 0.1 s" in caught.value.message
    assert caught.value.details["holder"]["pid"] == os.getpid()


def test_the_lock_is_taken_on_the_inittab_itself(tmp_path):
    import fcntl
    path = tmp_path / "inittab"
    path.write_bytes(b"x\n")
    with InittabFile(str(path)).locked():
        fd = os.open(str(path), os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_after_a_write_newcomers_wait_for_the_writer_on_the_new_file(tmp_path):
    """When the holder has replaced the file, a process opening the new file must
    still wait: the holder may write again before it lets go."""
    path = tmp_path / "inittab"
    path.write_bytes(b"x\n")
    with InittabFile(str(path)).locked() as tab:
        tab.write("y\n")
        with pytest.raises(BusyError):
            with InittabFile(str(path), timeout=0.1).locked():
                pass
    with InittabFile(str(path), timeout=0.1).locked() as tab:
        assert tab.read() == "y\n"


def test_a_waiter_whose_file_was_replaced_meanwhile_retries_on_the_new_file(tmp_path,
                                                                             monkeypatch):
    path = tmp_path / "inittab"
    path.write_bytes(b"old\n")
    waiting = threading.Event()
    real_pause = fs._pause

    def pause(seconds):
        waiting.set()  # the waiter holds an fd of the old file and found it locked
        real_pause(seconds)

    monkeypatch.setattr(fs, "_pause", pause)
    seen = []

    def waiter():
        with InittabFile(str(path)).locked() as tab:
            seen.append(tab.read())
            tab.write(tab.read() + "waiter\n")

    holder = InittabFile(str(path))
    with holder.locked():
        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(10)
        # Someone (an editor, another tool) replaces the file by rename meanwhile.
        replacement = tmp_path / "replacement"
        replacement.write_bytes(b"replaced\n")
        os.rename(replacement, path)
    thread.join(10)
    assert seen == ["replaced\n"]
    assert path.read_bytes() == b"replaced\nwaiter\n"


def test_a_waiter_for_a_missing_file_retries_once_it_was_created(tmp_path, monkeypatch):
    path = tmp_path / "inittab"
    waiting = threading.Event()
    real_pause = fs._pause

    def pause(seconds):
        waiting.set()
        real_pause(seconds)

    monkeypatch.setattr(fs, "_pause", pause)
    seen = []

    def waiter():
        with InittabFile(str(path)).locked() as tab:
            seen.append(tab.read())

    with InittabFile(str(path)).locked() as tab:
        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(10)
        tab.write("created\n")
    thread.join(10)
    assert seen == ["created\n"]


# -- telling init ------------------------------------------------------------------

def test_init_request_is_the_384_byte_struct_telinit_q_writes():
    data = inittab.init_request()
    assert len(data) == 384
    assert struct.unpack("=iiii", data[:16]) == (0x03091969, 1, ord("Q"), 3)
    assert data[16:] == bytes(368)


class Recorder:
    def __init__(self, monkeypatch):
        self.signals = []
        monkeypatch.setattr(inittab, "send_signal", lambda pid, sig: self.signals.append(
            (pid, sig)))


def test_reload_sysv_writes_the_request_to_inits_fifo(tmp_path, monkeypatch):
    calls = Recorder(monkeypatch)
    fifo = str(tmp_path / "initctl")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # init keeps its FIFO open
    try:
        reload_init(SYSV, initctl_paths=(fifo,))
        data = os.read(reader, 1000)
    finally:
        os.close(reader)
    assert len(data) == 384
    magic, cmd, runlevel, _sleeptime = struct.unpack("=iiii", data[:16])
    assert (magic, cmd, runlevel) == (0x03091969, 1, ord("Q"))
    assert calls.signals == []


def test_reload_sysv_tries_the_next_fifo_when_one_is_missing(tmp_path, monkeypatch):
    calls = Recorder(monkeypatch)
    fifo = str(tmp_path / "initctl")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        reload_init(SYSV, initctl_paths=(str(tmp_path / "none"), fifo))
        assert len(os.read(reader, 1000)) == 384
    finally:
        os.close(reader)
    assert calls.signals == []


def test_reload_sysv_falls_back_to_sighup_when_nobody_reads_the_fifo(tmp_path, monkeypatch):
    calls = Recorder(monkeypatch)
    fifo = str(tmp_path / "initctl")
    os.mkfifo(fifo)
    reload_init(SYSV, pid1=4321, initctl_paths=(fifo, str(tmp_path / "none")))
    assert calls.signals == [(4321, signal.SIGHUP)]


def test_reload_sysv_never_writes_into_a_regular_file(tmp_path, monkeypatch):
    calls = Recorder(monkeypatch)
    plain = tmp_path / "initctl"
    plain.write_bytes(b"")
    reload_init(SYSV, initctl_paths=(str(plain),))
    assert plain.read_bytes() == b"" and calls.signals == [(1, signal.SIGHUP)]


def test_reload_busybox_sends_sighup_to_pid1_only(tmp_path, monkeypatch):
    calls = Recorder(monkeypatch)
    monkeypatch.setattr(inittab, "write_initctl", lambda *a: pytest.fail("wrote a FIFO"))
    reload_init(BUSYBOX, pid1=7)
    assert calls.signals == [(7, signal.SIGHUP)]


def test_a_refused_signal_becomes_a_vz_error_naming_init(monkeypatch):
    def refuse(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(inittab, "send_signal", refuse)
    with pytest.raises(PermissionDeniedError, match=r"init \(pid 1\)"):
        reload_init(BUSYBOX)
