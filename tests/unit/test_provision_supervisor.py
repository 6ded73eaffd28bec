"""The vz supervisor under systemd or upstart: its unit or job, and what node add runs."""

import pytest

from vzmaster.provision import supervisor
from vzmaster.provision.remote import Done, ProvisionError


class FakeShell:
    label = "root@n1"

    def __init__(self, files=None, status=0, stdout=b""):
        self.files = dict(files or {})
        self.ran = []
        self.status, self.stdout = status, stdout
        self.status_of = {}  # argv[1] -> the status of unchecked runs of it

    def write_file(self, path, data, mode=0o644):
        changed = self.files.get(path) != data
        self.files[path] = data
        return changed

    def read_file(self, path):
        return self.files.get(path)

    def run(self, argv, check=True):
        self.ran.append(list(argv))
        status = self.status_of.get(argv[1], self.status) if not check else 0
        return Done(status, self.stdout, b"")


def test_the_unit_runs_the_agents_supervisor_in_the_foreground():
    unit = supervisor.systemd_unit().decode()
    assert "ExecStart=/usr/local/bin/vzslave supervisor --foreground --root /var/lib/vz" in unit
    assert "KillMode=mixed" in unit and "Restart=always" in unit


def test_the_upstart_job_runs_it_too():
    assert b"exec /usr/local/bin/vzslave supervisor --foreground" in supervisor.upstart_job()


def test_a_new_unit_is_enabled_and_started_without_a_daemon_reload():
    shell = FakeShell(status=3)  # is-active: not running; start (unchecked): fails
    shell.status_of = {"start": 0}
    step = supervisor.install_supervisor(shell, "systemd")
    assert shell.ran == [["systemctl", "--no-reload", "enable", "vz-supervisor"],
                         ["systemctl", "is-active", "--quiet", "vz-supervisor"],
                         ["systemctl", "start", "vz-supervisor"]]
    assert step.changed


def test_a_new_unit_systemd_does_not_find_is_found_after_a_reload():
    shell = FakeShell(status=5)  # is-active and the first start fail
    supervisor.install_supervisor(shell, "systemd")
    assert shell.ran[-2:] == [["systemctl", "daemon-reload"],
                              ["systemctl", "start", "vz-supervisor"]]


def test_a_changed_unit_is_reloaded_before_it_is_started():
    shell = FakeShell({supervisor.SYSTEMD_UNIT: b"[Unit]\n"}, status=3)
    shell.status_of = {"start": 0}
    supervisor.install_supervisor(shell, "systemd")
    assert shell.ran[0] == ["systemctl", "daemon-reload"]


def test_a_running_supervisor_with_its_unit_unchanged_is_left_as_it_is():
    shell = FakeShell({supervisor.SYSTEMD_UNIT: supervisor.systemd_unit()}, status=0)
    step = supervisor.install_supervisor(shell, "systemd")
    assert ["systemctl", "daemon-reload"] not in shell.ran and not step.changed
    assert all("start" not in argv and "restart" not in argv for argv in shell.ran)


def test_an_init_vz_knows_no_supervisor_for_is_refused_with_a_pointer():
    with pytest.raises(ProvisionError, match="initscripts/README.md"):
        supervisor.install_supervisor(FakeShell(), "runit")


def test_remove_stops_disables_and_deletes_the_systemd_unit():
    shell = FakeShell({supervisor.SYSTEMD_UNIT: supervisor.systemd_unit()})
    assert supervisor.remove_supervisor(shell) == supervisor.SYSTEMD_UNIT
    assert shell.ran == [["systemctl", "--no-reload", "disable", "--now", "vz-supervisor"],
                         ["rm", "-f", "--", supervisor.SYSTEMD_UNIT],
                         ["systemctl", "daemon-reload"]]


def test_remove_with_no_unit_or_job_runs_nothing():
    shell = FakeShell()
    assert supervisor.remove_supervisor(shell) == "" and shell.ran == []
