"""The vzmaster command against a local vzslave."""

import json

import pytest

from tests.conftest import sample_image
from vzmaster import cli


@pytest.fixture
def vzmaster(capsys, node_root, monkeypatch, tmp_path):
    """Run ``vzmaster ARGS`` in-process; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def run(*args):
        with pytest.raises(SystemExit) as exited:
            cli.main([a.replace("HOST", "local:" + node_root) for a in args])
        out, err = capsys.readouterr()
        return exited.value.code, out, err

    return run


def test_push_unpack_list_and_remove(vzmaster, image_file):
    path = image_file(sample_image())
    status, out, _ = vzmaster("push", "HOST", path)
    assert status == 0 and out.startswith("app.tar.gz ")
    assert vzmaster("unpack", "HOST", "app.tar.gz", "app")[0] == 0
    status, out, _ = vzmaster("images", "HOST")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "FORMAT", "SHA256", "CREATED"]
    assert "tar.gz" in out
    status, out, _ = vzmaster("bundles", "HOST", "--json")
    assert [b["name"] for b in json.loads(out)] == ["app"]
    assert vzmaster("rm-bundle", "HOST", "app")[0] == 0
    assert vzmaster("rm-image", "HOST", "app.tar.gz")[0] == 0
    assert json.loads(vzmaster("images", "HOST", "--json")[1]) == []


def test_hello_prints_the_node_facts(vzmaster, node_root):
    status, out, _ = vzmaster("hello", "HOST")
    assert status == 0
    assert "root         " + node_root in out


def test_a_remote_error_is_one_line_with_its_code_and_exit_1(vzmaster, node_root):
    status, _, err = vzmaster("rm-image", "HOST", "nope")
    assert status == cli.EXIT_REMOTE
    assert err == "vzmaster: local:{}: NO_SUCH_IMAGE: no image named 'nope' on this node\n" \
        .format(node_root)


def test_an_unreachable_node_exits_3(vzmaster):
    status, _, err = vzmaster("images", "127.0.0.1", "-p", "1", "--timeout", "2")
    assert status == cli.EXIT_TRANSPORT
    assert "cannot reach 127.0.0.1 port 1" in err


def test_a_missing_image_file_is_a_clear_error(vzmaster, tmp_path):
    status, _, err = vzmaster("push", "HOST", str(tmp_path / "missing.tar"))
    assert status == cli.EXIT_REMOTE
    assert "missing.tar" in err


def test_several_hosts_are_driven_in_turn(vzmaster, tmp_path):
    other = "local:" + str(tmp_path / "other")
    status, out, _ = vzmaster("images", "HOST," + other)
    assert status == 0
    assert out.count("== local:") == 2


def test_bad_usage_exits_2(vzmaster):
    assert vzmaster("push", "HOST")[0] == 2


def test_start_takes_repeated_runtime_args_written_with_equals():
    args = cli.build_parser().parse_args(
        ["start", "node1", "app", "--runtime", "crun",
         "--runtime-arg=--cgroup-manager=disabled", "--runtime-arg=--root=/run/x"])
    assert args.runtime_arg == ["--cgroup-manager=disabled", "--root=/run/x"]
