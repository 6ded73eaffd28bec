"""The vzmaster command's one path: hosts in turn or together, errors, JSON, pipes."""

import contextlib
import io
import json
import subprocess
import sys
import threading

import pytest

from vzmaster import cli
from vzmaster.errors import ConnectError
from vzmaster.imaging.errors import BuildError
from vzslave.errors import NoSuchImageError
from vzslave.records import ImageInfo

ROOT = __file__.rsplit("/tests/", 1)[0]


class FakeNode:
    """A Client of one host: images, logs, and failures on demand."""

    def __init__(self, host, nodes):
        self.host = host
        self.nodes = nodes

    def images(self):
        failure = self.nodes.failures.get(self.host)
        if failure:
            raise failure
        return [ImageInfo("{}.tar".format(self.host), 3, "ab" * 32, "tar", 0.0)]

    def logs(self, name, tail, follow):
        return self.nodes.logs[self.host]()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Nodes:
    def __init__(self):
        self.failures = {}
        self.logs = {}
        self.options = []

    def client(self, options):
        self.options.append(options)
        return FakeNode(options.host, self)


@pytest.fixture
def nodes(monkeypatch):
    made = Nodes()
    monkeypatch.setattr(cli, "Client", lambda options: made.client(options))
    return made


def vzmaster(*argv, stdout=None):
    out, err = stdout or io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exited:
            cli.main(list(argv))
    return exited.value.code, out.getvalue() if stdout is None else "", err.getvalue()


def test_the_connection_options_reach_the_client_as_one_record(nodes):
    vzmaster("images", "n1", "-l", "deploy", "-p", "2222", "-i", "key", "--via", "openssh")
    (options,) = nodes.options
    assert (options.host, options.user, options.port, options.key_files, options.via) == (
        "n1", "deploy", 2222, ("key",), "openssh")


def test_with_several_hosts_json_is_one_document_with_a_host_on_each_record(nodes):
    """When --json drives several hosts, the output is one valid JSON document."""
    status, out, _ = vzmaster("images", "n1,n2", "--json")
    assert status == 0
    assert [(r["host"], r["name"]) for r in json.loads(out)] == [("n1", "n1.tar"),
                                                                ("n2", "n2.tar")]


def test_a_node_error_comes_under_its_header_and_the_worst_status_wins(nodes):
    """When one of several hosts fails, its error follows its own header and names it."""
    nodes.failures["n2"] = NoSuchImageError("no image named 'x' on this node")
    nodes.failures["n3"] = ConnectError("cannot reach n3 port 22")
    events = []

    class Stream(io.StringIO):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def write(self, text):
            events.append((self.name, text))

    with contextlib.redirect_stdout(Stream("out")), contextlib.redirect_stderr(Stream("err")):
        with pytest.raises(SystemExit) as exited:
            cli.main(["images", "n1,n2,n3"])
    assert exited.value.code == cli.EXIT_TRANSPORT
    said = [text for _, text in events]
    assert said.index("== n2\n") < said.index(
        "vzmaster: n2: NO_SUCH_IMAGE: no image named 'x' on this node\n") < said.index("== n3\n")
    assert said[-1] == "vzmaster: n3: cannot reach n3 port 22\n"


def test_a_build_error_takes_the_same_path_and_exits_1(monkeypatch):
    def fail(recipe, output):
        raise BuildError("/etc/hostname is not an ELF program")

    monkeypatch.setattr("vzmaster.imaging.builder.build_image", fail)
    status, out, err = vzmaster("build", "--ldd", "/etc/hostname", "-o", "x.tar.zst", "--", "x")
    assert (status, out, err) == (1, "", "vzmaster: /etc/hostname is not an ELF program\n")


class ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_went_away_ends_the_command_quietly_with_141(nodes):
    """When stdout's reader has gone (| head), no traceback, and status 141."""
    status, _, err = vzmaster("images", "n1", stdout=ClosedPipe())
    assert (status, err) == (cli.EXIT_PIPE, "")


def test_following_several_hosts_follows_them_all_at_once_each_line_named(nodes):
    """When logs -f drives several hosts, lines of the second come while the first
    still follows, each prefixed with its host."""
    first_said = threading.Event()

    def first():
        yield "from n1"
        first_said.set()
        assert second_said.wait(10), "n2 was not followed at the same time as n1"
        yield "n1 again"

    second_said = threading.Event()

    def second():
        assert first_said.wait(10), "n1 was not followed at the same time as n2"
        yield "from n2"
        second_said.set()

    nodes.logs.update(n1=first, n2=second)
    status, out, _ = vzmaster("logs", "n1,n2", "app", "-f")
    assert status == 0
    assert out.splitlines() == ["n1 | from n1", "n2 | from n2", "n1 | n1 again"]


def test_ctrl_c_while_following_exits_130(nodes):
    def interrupted():
        yield "a line"
        raise KeyboardInterrupt()

    nodes.logs["n1"] = interrupted
    status, out, err = vzmaster("logs", "n1", "app", "-f")
    assert (status, out, err) == (cli.EXIT_INTERRUPTED, "a line\n", "vzmaster: interrupted\n")


def test_the_command_loads_without_the_build_tools_or_paramiko():
    """Every command pays for what it imports: pyelftools and zstandard only for build."""
    code = ("import sys, vzmaster.cli\n"
            "loaded = [m for m in ('elftools', 'zstandard', 'paramiko') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
