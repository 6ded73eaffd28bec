"""strace-trace: real commands under the real strace, and the spec file format."""

import io
import os
import shutil
import sys

import pytest

from vzmaster.imaging.errors import BuildError
from vzmaster.imaging.trace import read_spec, render_spec, trace_command, write_spec

needs_strace = pytest.mark.skipif(shutil.which("strace") is None,
                                  reason="strace is not installed (apt install strace)")


@needs_strace
def test_a_program_is_listed_with_its_file_loader_and_libc():
    paths = trace_command(["cat", "/etc/hostname"])
    assert "/etc/hostname" in paths
    assert "/usr/bin/cat" in paths or "/bin/cat" in paths
    assert "/lib64/ld-linux-x86-64.so.2" in paths  # from PT_INTERP: no syscall opens it
    assert any(path.endswith("/libc.so.6") for path in paths)


@needs_strace
def test_the_seeds_perl_example_lists_perl_and_the_modules_it_loads():
    if not os.path.exists("/usr/bin/perl"):
        pytest.skip("perl is not installed")
    paths = trace_command(["/usr/bin/perl", "-MHTTP::Date", "-e",
                           'print time2str(time())."\\n"'])
    assert "/usr/bin/perl" in paths
    assert any(path.endswith("/HTTP/Date.pm") for path in paths)
    assert any(path.endswith("/strict.pm") for path in paths)


@needs_strace
def test_the_result_is_sorted_absolute_and_without_duplicates():
    paths = trace_command(["sh", "-c", "cat /etc/hostname; cat /etc/hostname"])
    assert paths == sorted(set(paths))
    assert all(path.startswith("/") for path in paths)


@needs_strace
def test_a_file_that_failed_to_open_is_not_listed():
    paths = trace_command(["sh", "-c", "cat /nonexistent-vz-file 2>/dev/null; true"])
    assert "/nonexistent-vz-file" not in paths


@needs_strace
def test_proc_and_dev_files_are_not_listed():
    paths = trace_command(["cat", "/proc/self/status", "/dev/null"])
    assert not [path for path in paths if path.startswith(("/proc/", "/dev/"))]
    assert "/usr/bin/cat" in paths or "/bin/cat" in paths


@needs_strace
def test_directories_are_not_listed():
    paths = trace_command(["ls", "/etc"])
    assert "/etc" not in paths
    assert not [path for path in paths if os.path.isdir(path)]


@needs_strace
def test_a_relative_open_after_cd_is_listed_by_its_full_path():
    paths = trace_command(["sh", "-c", "cd /etc && cat hostname"])
    assert "/etc/hostname" in paths
    assert "hostname" not in paths


@needs_strace
def test_a_relative_exec_after_cd_is_listed_by_its_full_path():
    # sh chdirs, then its vforked child execs "./true" before any call that shows its
    # cwd: the child must inherit the directory its parent had at the fork.
    paths = trace_command(["sh", "-c", "cd /usr/bin && ./true"])
    assert "/usr/bin/true" in paths


@needs_strace
def test_a_relative_chdir_is_followed():
    # dash makes "cd bin" absolute itself; env -C calls chdir("bin") as given.
    paths = trace_command(["sh", "-c", "cd /usr && env -C bin ./true; true"])
    assert "/usr/bin/true" in paths


@needs_strace
def test_a_relative_command_is_found_from_the_given_cwd():
    paths = trace_command(["./true"], cwd="/usr/bin")
    assert "/usr/bin/true" in paths


@needs_strace
def test_a_file_opened_relative_to_a_directory_fd_is_listed_by_its_full_path():
    code = ("import os; d = os.open('/etc', os.O_RDONLY); "
            "os.close(os.open('hostname', os.O_RDONLY, dir_fd=d))")
    paths = trace_command([sys.executable, "-S", "-c", code])
    assert "/etc/hostname" in paths


@needs_strace
def test_a_childs_opens_are_listed():
    paths = trace_command(["sh", "-c", "cat /etc/hostname; true"])
    assert "/etc/hostname" in paths
    assert "/usr/bin/cat" in paths or "/bin/cat" in paths


@needs_strace
def test_a_script_gets_its_interpreter(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/dash -e\nexit 0\n")
    script.chmod(0o755)
    paths = trace_command([str(script)])
    assert "/bin/dash" in paths  # the kernel ran it: no traced call names it
    assert "/lib64/ld-linux-x86-64.so.2" in paths  # and dash's own loader


@needs_strace
def test_symlinks_are_kept_as_the_program_opened_them():
    paths = trace_command(["cat", "/etc/hostname"])
    assert "/lib64/ld-linux-x86-64.so.2" in paths
    assert os.path.realpath("/lib64/ld-linux-x86-64.so.2") not in paths


@needs_strace
def test_the_commands_stdout_goes_to_the_given_stream():
    out = io.BytesIO()
    trace_command(["echo", "hello"], stdout=out)
    assert out.getvalue() == b"hello\n"


@needs_strace
def test_a_failing_command_names_its_status_and_its_stderr():
    with pytest.raises(BuildError) as raised:
        trace_command(["sh", "-c", "echo boom >&2; exit 3"])
    assert "status 3" in raised.value.message
    assert "boom" in raised.value.message


@needs_strace
def test_a_missing_command_is_named():
    with pytest.raises(BuildError) as raised:
        trace_command(["no-such-command-vz"])
    assert "no-such-command-vz" in raised.value.message
    assert "not found" in raised.value.message


@needs_strace
def test_a_command_that_runs_too_long_is_killed_and_named_with_the_timeout():
    with pytest.raises(BuildError) as raised:
        trace_command(["sleep", "30"], timeout=0.5)
    assert "0.5 s" in raised.value.message
    assert "sleep 30" in raised.value.message


@needs_strace
def test_a_server_traced_for_a_set_time_is_stopped_and_what_it_opened_is_kept():
    paths = trace_command(["sh", "-c", "cat /etc/hostname >/dev/null; exec sleep 30"],
                          run_for=1)
    assert "/etc/hostname" in paths and "/usr/bin/sleep" in paths


@needs_strace
def test_a_server_failing_before_its_time_is_still_a_failure():
    with pytest.raises(BuildError, match="status 4"):
        trace_command(["sh", "-c", "exit 4"], run_for=30)


def test_a_missing_strace_says_how_to_install_it():
    with pytest.raises(BuildError) as raised:
        trace_command(["true"], strace="no-such-strace-vz")
    assert "apt install strace" in raised.value.message


def test_a_ptrace_refusal_is_explained(tmp_path):
    """When ptrace is not permitted, strace's complaint becomes advice (a stub strace)."""
    stub = tmp_path / "strace"
    stub.write_text("#!/bin/sh\necho 'strace: ptrace(PTRACE_TRACEME, ...): Operation not "
                    "permitted' >&2\nexit 1\n")
    stub.chmod(0o755)
    with pytest.raises(BuildError) as raised:
        trace_command(["true"], strace=str(stub))
    assert "ptrace" in raised.value.message
    assert "not permitted" in raised.value.message


def test_a_spec_round_trips(tmp_path):
    spec = str(tmp_path / "spec")
    write_spec(["/usr/bin/perl", "/etc/localtime", "/usr/bin/perl"], spec)
    assert read_spec(spec) == ["/etc/localtime", "/usr/bin/perl"]


def test_a_spec_is_sorted_one_path_a_line_newline_terminated():
    assert render_spec(["/b", "/a", "/b"]) == "/a\n/b\n"


def test_writing_a_spec_leaves_no_temporary_file(tmp_path):
    write_spec(["/a"], str(tmp_path / "spec"))
    assert os.listdir(str(tmp_path)) == ["spec"]


def test_a_spec_that_cannot_be_written_is_named(tmp_path):
    with pytest.raises(BuildError) as raised:
        write_spec(["/a"], str(tmp_path / "no-dir" / "spec"))
    assert "no-dir" in raised.value.message


def test_reading_a_spec_ignores_comments_blanks_and_surrounding_blanks(tmp_path):
    spec = tmp_path / "spec"
    spec.write_text("# traced from perl\n\n  /usr/bin/perl  \n/etc/localtime\n"
                    "/usr/bin/perl\n")
    assert read_spec(str(spec)) == ["/usr/bin/perl", "/etc/localtime"]


def test_a_relative_line_in_a_spec_is_refused_with_its_line_number(tmp_path):
    spec = tmp_path / "spec"
    spec.write_text("# comment\n/usr/bin/perl\nlib/libc.so.6\n")
    with pytest.raises(BuildError) as raised:
        read_spec(str(spec))
    assert "line 3" in raised.value.message
    assert "lib/libc.so.6" in raised.value.message


def test_a_missing_spec_file_is_named(tmp_path):
    with pytest.raises(BuildError) as raised:
        read_spec(str(tmp_path / "nope"))
    assert "nope" in raised.value.message
