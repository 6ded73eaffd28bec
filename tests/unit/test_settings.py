"""A container's settings.json: read, written byte for byte as before, the marks."""

import os

from vzslave.settings import (
    DEFAULT_LOG_KEEP,
    DEFAULT_LOG_MAX,
    FILE,
    Options,
    Settings,
    ids_in_use,
    trees_in_use,
)
from vzslave.states import Mark, Wanted

# As the code before the settings record wrote it: json.dumps(sort_keys=True, indent=1).
STARTED = (b'{\n "id": "v000",\n "log_keep": 2,\n "log_max": 1048576,\n "monitor": true,\n'
           b' "runtime": "builtin",\n "syslog": false,\n'
           b' "tree": "/var/lib/vz/bundles/.trees/app.0001",\n "wanted": "running",\n'
           b' "warnings": [\n  "this node cannot pivot_root"\n ]\n}')
STOPPED = (b'{\n "log_keep": 2,\n "log_max": 1048576,\n "monitor": true,\n'
           b' "runtime": "builtin",\n "syslog": false,\n "wanted": "stopped",\n'
           b' "warnings": [\n  "this node cannot pivot_root"\n ]\n}')


def write(directory, data):
    os.makedirs(str(directory), exist_ok=True)
    (directory / FILE).write_bytes(data)


def test_settings_of_a_container_never_started_are_empty_and_not_found(tmp_path):
    settings = Settings.load(str(tmp_path / "app"))
    assert not settings.found and settings.values == {} and settings.wanted is None


def test_an_unreadable_settings_file_is_found_but_empty(tmp_path):
    write(tmp_path, b"{half")
    settings = Settings.load(str(tmp_path))
    assert settings.found and settings.values == {}


def test_a_file_in_place_of_the_state_directory_is_not_a_container(tmp_path):
    """When ROOT/containers holds a file (the vz supervisor's inittab), it is no container."""
    (tmp_path / "inittab").write_text("")
    assert not Settings.load(str(tmp_path / "inittab")).found


def test_settings_written_by_the_code_before_are_saved_back_byte_for_byte(tmp_path):
    write(tmp_path, STARTED)
    settings = Settings.load(str(tmp_path))
    settings.save(str(tmp_path))
    assert (tmp_path / FILE).read_bytes() == STARTED


def test_a_finished_stop_writes_what_the_code_before_wrote(tmp_path):
    write(tmp_path, STARTED)
    settings = Settings.load(str(tmp_path))
    settings.wanted = Wanted.STOPPED
    settings.mark(Mark.STOPPING)
    settings.save(str(tmp_path))
    assert b'"stopping": true' in (tmp_path / FILE).read_bytes()
    settings.stopped()
    settings.save(str(tmp_path))
    assert (tmp_path / FILE).read_bytes() == STOPPED


def test_keys_this_version_does_not_know_are_kept(tmp_path):
    write(tmp_path, b'{\n "future": [1, 2],\n "wanted": "running"\n}')
    settings = Settings.load(str(tmp_path))
    settings.ask(log_max=5)
    settings.save(str(tmp_path))
    assert Settings.load(str(tmp_path)).values == {"future": [1, 2], "log_max": 5,
                                                   "wanted": "running"}


def test_options_not_given_keep_their_earlier_values(tmp_path):
    settings = Settings({"runtime": "runc", "runtime_args": ["--root=/x"], "monitor": False})
    settings.ask(runtime=None, runtime_args=None, log_keep=7, syslog=None, monitor=None)
    options = settings.options
    assert (options.runtime, options.runtime_args, options.log_keep, options.monitor) == (
        "runc", ["--root=/x"], 7, False)


def test_options_never_given_have_their_defaults():
    assert Settings().options == Options("builtin", [], DEFAULT_LOG_MAX, DEFAULT_LOG_KEEP,
                                         False, True)


def test_marks_say_what_is_under_way_until_cleared():
    settings = Settings({"wanted": "running"})
    assert not settings.under_way
    settings.mark(Mark.STARTING)
    assert settings.marked(Mark.STARTING) and settings.under_way
    assert settings.values["starting"] is True  # as the code before wrote it
    settings.unmark(Mark.STARTING)
    settings.unmark(Mark.STOPPING)  # not set: no error
    assert not settings.under_way and settings.values == {"wanted": "running"}


def test_trees_and_ids_in_use_are_those_of_the_containers_holding_them(tmp_path):
    write(tmp_path / "a", b'{"id": "v000", "tree": "/t/a.0001", "wanted": "running"}')
    write(tmp_path / "b", b'{"id": "v001", "tree": "/t/b.0001", "wanted": "running"}')
    write(tmp_path / "c", b'{"wanted": "stopped"}')
    write(tmp_path / ".hidden", b'{"id": "v009", "tree": "/t/x"}')
    assert trees_in_use(str(tmp_path)) == {"/t/a.0001", "/t/b.0001"}
    assert ids_in_use(str(tmp_path), but="a") == {"v001"}
