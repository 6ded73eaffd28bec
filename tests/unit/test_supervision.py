"""What runs the entries (PID 1 or the vz supervisor), and our entries in its inittab."""

import os
import subprocess

import pytest

from vzslave import supervision
from vzslave.errors import InittabError
from vzslave.inittab import Dialect
from vzslave.supervision import RELOAD_PENDING, Entries, Supervision, is_active

ADMIN = "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n"


@pytest.mark.parametrize("init,dialect", [("sysvinit", Dialect.SYSV),
                                          ("busybox", Dialect.BUSYBOX)])
def test_an_init_that_honours_inittab_runs_the_entries_itself(layout, monkeypatch, init,
                                                             dialect):
    monkeypatch.setattr(supervision, "detect_init", lambda: init)
    found = supervision.detect_supervision(layout)
    assert (found.name, found.inittab, found.dialect) == (init, "/etc/inittab", dialect)


def test_systemd_without_the_vz_supervisor_is_refused_saying_what_to_install(layout,
                                                                            monkeypatch):
    monkeypatch.setattr(supervision, "detect_init", lambda: "systemd")
    with pytest.raises(InittabError, match="initscripts/README.md"):
        supervision.detect_supervision(layout)


def test_systemd_with_the_vz_supervisor_running_uses_its_inittab(layout, monkeypatch):
    monkeypatch.setattr(supervision, "detect_init", lambda: "systemd")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with open(os.path.join(layout.containers, supervision.SUPERVISOR_PID), "w") as out:
            out.write("{}\n".format(sleeper.pid))
        found = supervision.detect_supervision(layout)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert (found.name, found.inittab, found.dialect) == (
        "vz-supervisor", os.path.join(layout.containers, "inittab"), Dialect.SYSV)


def test_a_pid_file_of_a_dead_supervisor_counts_as_none(layout, monkeypatch):
    monkeypatch.setattr(supervision, "detect_init", lambda: "upstart")
    sleeper = subprocess.Popen(["true"])
    sleeper.wait()
    with open(os.path.join(layout.containers, supervision.SUPERVISOR_PID), "w") as out:
        out.write("{}\n".format(sleeper.pid))
    with pytest.raises(InittabError):
        supervision.detect_supervision(layout)


@pytest.fixture
def entries(layout, tmp_path):
    """Entries over a temp sysv inittab whose reloads are counted."""
    inittab = tmp_path / "inittab"
    inittab.write_text(ADMIN)
    reloads = []
    made = Entries(layout, lambda: Supervision("sysvinit", str(inittab), Dialect.SYSV,
                                               lambda: reloads.append(1)))
    made.inittab, made.reloads = inittab, reloads
    return made


def test_an_entry_put_is_found_active_and_init_reloads(entries, layout):
    with entries.locked() as tab:
        entries.put(tab, tab.read(), "app", "v000", exists=False)
    text = entries.inittab.read_text()
    assert text == ADMIN + "v000:2345:respawn:{} app\n".format(layout.launcher)
    assert is_active(entries.find(text, "app")) and entries.reloads == [1]
    assert list(entries.by_name(text)) == ["app"]
    assert not os.path.exists(os.path.join(layout.containers, RELOAD_PENDING))


def test_an_entry_commented_out_is_found_inactive_and_restored_by_put(entries, layout):
    line = "v000:2345:respawn:{} app\n".format(layout.launcher)
    entries.inittab.write_text(ADMIN + "#" + line)
    entry = entries.find(entries.read(), "app")
    assert entry is not None and not is_active(entry)
    with entries.locked() as tab:
        entries.put(tab, tab.read(), "app", "v000", exists=True)
    assert entries.inittab.read_text() == ADMIN + line


def test_an_entry_removed_leaves_the_admins_lines(entries):
    with entries.locked() as tab:
        entries.put(tab, tab.read(), "app", "v000", exists=False)
    with entries.locked() as tab:
        entries.remove(tab, tab.read(), "app")
    assert entries.inittab.read_text() == ADMIN and entries.reloads == [1, 1]
    assert entries.find(entries.read(), "app") is None and not is_active(None)


def test_a_reload_owed_by_a_killed_session_is_made_once(entries, layout):
    """When a vzslave dies between writing the inittab and telling init, its mark makes
    the next one reload."""
    open(os.path.join(layout.containers, RELOAD_PENDING), "w").close()
    entries.reload_if_pending()
    entries.reload_if_pending()
    assert entries.reloads == [1]


def test_without_supervision_there_is_no_text_and_no_supervisor(layout):
    def detect():
        raise InittabError("PID 1 ignores inittab")

    none = Entries(layout, detect)
    assert none.read() == "" and none.supervisor_name == "none"
    open(os.path.join(layout.containers, RELOAD_PENDING), "w").close()
    none.reload_if_pending()  # the mark waits for what will run the entries
    assert os.path.exists(os.path.join(layout.containers, RELOAD_PENDING))


def test_supervision_is_detected_once(layout):
    seen = []

    def detect():
        seen.append(1)
        return Supervision("busybox", "/nonexistent", Dialect.BUSYBOX, lambda: None)

    once = Entries(layout, detect)
    assert once.supervisor_name == "busybox" and once.supervision.dialect is Dialect.BUSYBOX
    assert seen == [1]
