"""The app commands' options as the master parses them: --env, --secret, --volume,
--health and its timing, --release, and the deploy-image parser itself."""

import argparse
import types

import pytest

from vzmaster import appcli, cli
from vzmaster.output import Call
from vzslave.errors import BadRequestError
from vzslave.records import ReleaseInfo, RunResult

SECRET = "hunter2-s3cr3t"


def health_args(health=None, timeout=None, min_uptime=None):
    return argparse.Namespace(health=health, health_timeout=timeout, min_uptime=min_uptime)


def refused(function, *args):
    with pytest.raises(BadRequestError) as raised:
        function(*args)
    return raised.value.message


# -- --env ----------------------------------------------------------------------------------


def test_env_pairs_become_a_map():
    assert appcli._pairs(["A=1", "B=x=y", "C="], "--env") == {"A": "1", "B": "x=y", "C": ""}


def test_a_later_env_pair_wins():
    assert appcli._pairs(["A=1", "A=2"], "--env") == {"A": "2"}


@pytest.mark.parametrize("item", ["A", "=1", ""])
def test_an_env_item_without_a_name_and_equals_sign_is_refused_naming_the_option(item):
    assert refused(appcli._pairs, [item], "--env").startswith("--env takes NAME=VALUE")


# -- --secret -------------------------------------------------------------------------------


def test_a_secret_given_with_its_value_is_taken_as_given(monkeypatch):
    monkeypatch.setenv("TOKEN", "from the environment")
    assert appcli._secrets(["TOKEN=" + SECRET]) == {"TOKEN": SECRET}


def test_a_secret_named_alone_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TOKEN", SECRET)
    assert appcli._secrets(["TOKEN"]) == {"TOKEN": SECRET}


def test_a_secret_named_alone_may_be_set_empty(monkeypatch):
    monkeypatch.setenv("TOKEN", "")
    assert appcli._secrets(["TOKEN"]) == {"TOKEN": ""}


def test_a_secret_named_alone_but_not_set_is_refused_naming_it(monkeypatch):
    monkeypatch.delenv("VZ_TEST_UNSET", raising=False)
    assert "VZ_TEST_UNSET" in refused(appcli._secrets, ["VZ_TEST_UNSET"])


def test_no_secrets_is_an_empty_map():
    assert appcli._secrets([]) == {}


# -- --volume -------------------------------------------------------------------------------


def test_volumes_become_a_map_of_name_to_path():
    assert appcli._volumes(["data:/srv/data", "logs:/var/log"]) == {
        "data": "/srv/data", "logs": "/var/log"}


def test_a_volume_path_is_passed_on_unchecked_for_the_node_to_judge():
    assert appcli._volumes(["data:relative"]) == {"data": "relative"}


@pytest.mark.parametrize("item", ["data", ":/data", ""])
def test_a_volume_without_a_name_and_colon_is_refused(item):
    assert refused(appcli._volumes, [item]).startswith("--volume takes NAME:/PATH")


# -- --health -------------------------------------------------------------------------------


def test_no_health_option_is_no_spec():
    assert appcli._health(health_args()) is None


def test_a_tcp_check_takes_a_port_number():
    assert appcli._health(health_args("tcp:8080")) == {"tcp": 8080}


def test_a_tcp_port_that_is_no_number_is_passed_on_for_the_node_to_refuse():
    assert appcli._health(health_args("tcp:http")) == {"tcp": "http"}


def test_an_http_check_keeps_the_whole_url():
    assert appcli._health(health_args("http://127.0.0.1:8080/up?x=1")) == {
        "http": "http://127.0.0.1:8080/up?x=1"}


def test_a_cmd_check_is_split_as_a_shell_would():
    assert appcli._health(health_args("cmd:/bin/check --url 'http://x/ y'")) == {
        "cmd": ["/bin/check", "--url", "http://x/ y"]}


def test_the_timing_options_are_added_to_the_check():
    assert appcli._health(health_args("tcp:80", timeout=60.0, min_uptime=5.0)) == {
        "tcp": 80, "timeout": 60.0, "min_uptime": 5.0}


def test_timing_alone_is_a_spec_of_timing():
    assert appcli._health(health_args(min_uptime=0.0)) == {"min_uptime": 0.0}


@pytest.mark.parametrize("text", ["udp:53", "8080", "tcp", "TCP:80", ""])
def test_an_unknown_kind_of_check_is_refused(text):
    assert "--health takes tcp:PORT" in refused(appcli._health, health_args(text))


def test_a_cmd_check_with_an_unbalanced_quote_is_refused():
    refused(appcli._health, health_args("cmd:/bin/check 'x"))


# -- --release ------------------------------------------------------------------------------


def test_a_release_command_is_split_as_a_shell_would():
    assert appcli._argv("manage.py migrate --database 'main db'") == [
        "manage.py", "migrate", "--database", "main db"]


def test_a_release_command_with_an_unbalanced_quote_is_refused():
    refused(appcli._argv, "migrate 'x")


def test_no_release_command_is_none():
    assert appcli._argv(None) is None


# -- the parser -----------------------------------------------------------------------------


def test_deploy_image_help_parses(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.build_parser().parse_args(["deploy-image", "--help"])
    assert raised.value.code == 0
    assert "--secret" in capsys.readouterr().out


def test_deploy_image_collects_repeated_options():
    args = cli.build_parser().parse_args([
        "deploy-image", "node1", "web", "web.tar.gz", "--env", "A=1", "--env", "B=2",
        "--secret", "TOKEN", "--volume", "data:/data", "--health", "tcp:8080",
        "--min-uptime", "5", "--keep", "5", "--no-monitor"])
    assert (args.run, args.host, args.app, args.image) == (
        appcli.cmd_deploy_image, "node1", "web", "web.tar.gz")
    assert (args.env, args.secret, args.volume) == (["A=1", "B=2"], ["TOKEN"],
                                                   ["data:/data"])
    assert (args.health, args.min_uptime, args.health_timeout) == ("tcp:8080", 5.0, None)
    assert (args.keep, args.monitor) == (5, False)


def test_deploy_image_defaults():
    args = cli.build_parser().parse_args(["deploy-image", "node1", "web", "web.tar"])
    assert (args.env, args.secret, args.volume, args.health, args.release) == (
        [], [], [], None, None)
    assert (args.keep, args.override, args.grace, args.monitor) == (3, False, 10.0, None)


class DeployNode:
    """The Client as cmd_deploy_image uses it: each call recorded."""

    def __init__(self):
        self.calls = []

    def upload_image(self, path, name=None, progress=None):
        self.calls.append(("upload_image", path, name))
        return types.SimpleNamespace(name=name or "web.tar")

    def deploy(self, app, image, **options):
        self.calls.append(("deploy", app, image, options))
        return ReleaseInfo(app, 4, image, "ab" * 32, 0.0, True, sorted(options["env"]),
                           sorted(options["secrets"]), options["volumes"],
                           options["health"], options["release"])


def deploy_image(argv, node):
    args = cli.build_parser().parse_args(["deploy-image", "node1", "web", "web.tar"] + argv)
    return appcli.cmd_deploy_image(node, Call(args, "node1", FakeOutput()))


def test_deploy_image_uploads_then_deploys_with_the_options_parsed(monkeypatch):
    monkeypatch.setenv("TOKEN", SECRET)
    node = DeployNode()
    deploy_image(["--env", "A=1", "--secret", "TOKEN", "--volume", "data:/data",
                  "--health", "tcp:8080", "--release", "migrate --all"], node)
    (upload, _, _), (deploy, app, image, options) = node.calls
    assert (upload, deploy, app, image) == ("upload_image", "deploy", "web", "web.tar")
    assert (options["env"], options["secrets"], options["volumes"], options["health"],
            options["release"]) == ({"A": "1"}, {"TOKEN": SECRET}, {"data": "/data"},
                                    {"tcp": 8080}, ["migrate", "--all"])


def test_a_bad_option_is_refused_before_the_image_is_uploaded():
    node = DeployNode()
    with pytest.raises(BadRequestError):
        deploy_image(["--env", "A"], node)
    assert node.calls == []


class FakeNode:
    """The Client as cmd_run uses it."""

    def __init__(self, status=0, output="one\ntwo\n"):
        self.result = RunResult(3, "exit {}".format(status), status, output, False)
        self.ran = None

    def run(self, app, argv, timeout):
        self.ran = (app, argv, timeout)
        return self.result


class FakeOutput:
    def __init__(self):
        self.lines = []

    def line(self, host, text, live=False):
        self.lines.append(text)


def run_command(argv, node):
    args = cli.parse_args(["run", "node1", "web"] + argv)
    output = FakeOutput()
    return appcli.cmd_run(node, Call(args, "node1", output)), output


def test_run_runs_the_command_after_the_double_dash():
    node = FakeNode()
    run_command(["--", "ls", "-l"], node)
    assert node.ran == ("web", ["ls", "-l"], 600.0)


def test_run_prints_the_output_and_exits_with_the_commands_status():
    shown, output = run_command(["--", "false"], FakeNode(status=1))
    assert output.lines == ["one", "two"]
    assert (shown.status, shown.complaint) == (1, "the command ended with exit 1")


def test_run_without_a_command_is_refused():
    with pytest.raises(BadRequestError):
        run_command(["--"], FakeNode())


def test_an_option_after_the_app_is_an_option_not_the_command():
    node = FakeNode()
    run_command(["--run-timeout", "5", "--", "ls"], node)
    assert node.ran == ("web", ["ls"], 5.0)
