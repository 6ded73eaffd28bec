"""Health checks: the spec a deploy may give, one probe of a port or URL, and the wait
for a pass that the app then outlives without a respawn (on a fake clock)."""

import http.server
import os
import socket
import threading

import pytest

from tests.conftest import requires_root
from vzslave import health
from vzslave.errors import BadRequestError
from vzslave.health import Instance

UP = Instance(pid=10, spawns=1, state="running", note="")


def refused(spec):
    with pytest.raises(BadRequestError) as raised:
        health.check_spec(spec)
    assert raised.value.details == {"argument": "health"}
    return raised.value.message


# -- check_spec -----------------------------------------------------------------------------


def test_no_spec_is_none():
    assert health.check_spec(None) is None


def test_a_tcp_spec_gets_the_default_timing():
    assert health.check_spec({"tcp": 8080}) == {"tcp": 8080, "timeout": 30.0, "interval": 0.5,
                                                "min_uptime": 2.0}


def test_timing_given_is_kept_as_float():
    checked = health.check_spec({"tcp": 80, "timeout": 5, "interval": 1, "min_uptime": 0})
    assert (checked["timeout"], checked["interval"], checked["min_uptime"]) == (5.0, 1.0, 0.0)
    assert isinstance(checked["timeout"], float)


def test_a_spec_of_only_timing_is_accepted_as_running():
    assert health.check_spec({"min_uptime": 5}) == {"timeout": 30.0, "interval": 0.5,
                                                    "min_uptime": 5.0}


def test_two_kinds_are_refused():
    refused({"tcp": 80, "http": "http://127.0.0.1:80/"})


def test_unknown_keys_are_refused_by_name():
    assert "retries" in refused({"tcp": 80, "retries": 3})


def test_a_spec_that_is_not_a_map_is_refused():
    refused("tcp:8080")


@pytest.mark.parametrize("port", [0, 65536, 70000, -1, True, "8080", 80.0, None])
def test_a_tcp_port_outside_1_to_65535_or_not_an_int_is_refused(port):
    refused({"tcp": port})


@pytest.mark.parametrize("port", [1, 65535])
def test_the_tcp_port_limits_are_inclusive(port):
    assert health.check_spec({"tcp": port})["tcp"] == port


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/up", "http://localhost:80/",
                                 "http://[::1]:8080/up?x=1"])
def test_an_http_url_on_this_node_with_a_port_is_accepted(url):
    assert health.check_spec({"http": url})["http"] == url


@pytest.mark.parametrize("url", ["http://example.com:8080/", "http://10.0.0.1:80/",
                                 "http://127.0.0.1/up", "https://127.0.0.1:8443/",
                                 "127.0.0.1:8080", "http://127.0.0.1:99999/",
                                 "http://127.0.0.1:80/\0", 8080, None])
def test_an_http_url_elsewhere_without_a_port_or_not_http_is_refused(url):
    refused({"http": url})


def test_an_http_url_on_port_0_is_refused():
    refused({"http": "http://127.0.0.1:0/up"})


def test_a_cmd_is_an_argv_list():
    assert health.check_spec({"cmd": ["/bin/check", "-q"]})["cmd"] == ["/bin/check", "-q"]


@pytest.mark.parametrize("cmd", ["/bin/check -q", [], [""], None])
def test_a_cmd_that_is_not_an_argv_list_is_refused(cmd):
    with pytest.raises(BadRequestError):
        health.check_spec({"cmd": cmd})


@pytest.mark.parametrize("key,value", [("timeout", 0), ("timeout", 3601), ("interval", 0.01),
                                       ("interval", 61), ("min_uptime", -1),
                                       ("min_uptime", 601), ("timeout", True),
                                       ("timeout", "30"), ("timeout", None)])
def test_timing_out_of_range_or_not_a_number_is_refused(key, value):
    assert key in refused({"tcp": 80, key: value})


# -- probes ---------------------------------------------------------------------------------


@pytest.fixture
def listening():
    """A port on 127.0.0.1 that accepts connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 nothing listens on (bound once, then let go)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class Handler(http.server.BaseHTTPRequestHandler):
    """/up answers 200, /moved 302, anything else 500 with a body."""

    def do_GET(self):
        status = {"/up": 200, "/moved": 302}.get(self.path.split("?")[0], 500)
        body = b"ok" if status < 400 else b"database is down"
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/up")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    """The URL of a tiny HTTP server on 127.0.0.1, for the whole module."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield "http://127.0.0.1:{}".format(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_tcp_passes_when_the_port_accepts(listening):
    assert health.probe({"tcp": listening}, 2.0) == (
        True, "tcp 127.0.0.1:{}: connected".format(listening))


def test_tcp_fails_on_a_closed_port_naming_it(closed_port):
    passed, seen = health.probe({"tcp": closed_port}, 2.0)
    assert not passed and "127.0.0.1:{}".format(closed_port) in seen


def test_http_passes_on_2xx(web):
    passed, seen = health.probe({"http": web + "/up"}, 2.0)
    assert passed and "200" in seen


def test_http_passes_on_3xx_without_following_it(web):
    passed, seen = health.probe({"http": web + "/moved"}, 2.0)
    assert passed and "302" in seen


def test_http_fails_on_500_with_the_status_and_the_body(web):
    passed, seen = health.probe({"http": web + "/broken?x=1"}, 2.0)
    assert not passed and "500" in seen and "database is down" in seen


def test_http_fails_on_a_closed_port_naming_the_url(closed_port):
    url = "http://127.0.0.1:{}/up".format(closed_port)
    passed, seen = health.probe({"http": url}, 2.0)
    assert not passed and seen.startswith("GET " + url + ": ")


def test_a_probe_without_a_pid_is_made_from_the_nodes_namespace(listening):
    spec = {"tcp": listening}
    assert health.probe_in(None, spec, 2.0) == health.probe(spec, 2.0)


@requires_root
def test_a_probe_from_inside_a_pids_network_namespace_reports_what_it_saw(listening):
    assert health.probe_in(os.getpid(), {"tcp": listening}, 2.0) == (
        True, "tcp 127.0.0.1:{}: connected".format(listening))


def test_a_probe_into_the_namespace_of_a_gone_pid_fails_saying_so(listening):
    passed, seen = health.probe_in(2 ** 22 + 1, {"tcp": listening}, 2.0)
    assert not passed and seen.startswith("cannot enter the app's network namespace")


# -- wait_healthy ---------------------------------------------------------------------------


class Clock:
    """A monotonic clock that only sleep moves."""

    def __init__(self):
        self.now = 1000.0
        self.slept = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds
        self.slept += 1


def wait(spec, instance, check=None, min_uptime=None, clock=None):
    clock = clock or Clock()
    spec = health.check_spec(spec)
    if min_uptime is None:
        min_uptime = spec["min_uptime"] if spec else health.DEFAULTS["min_uptime"]
    instances = instance if callable(instance) else (lambda: instance)

    def no_check(spec, timeout):
        raise AssertionError("no check was to be made")

    return health.wait_healthy(spec, min_uptime, instances, check or no_check, clock,
                               clock.sleep)


def sequence(*instances):
    """instance() answering each of ``instances`` in turn, then the last one forever."""
    left = list(instances)
    return lambda: left.pop(0) if len(left) > 1 else left[0]


def test_a_pass_the_app_outlives_is_healthy():
    assert wait({"tcp": 80}, UP, lambda spec, timeout: (True, "connected")) == (
        True, "connected")


def test_the_instance_is_watched_through_min_uptime_after_the_pass():
    calls = []

    def instance():
        calls.append(1)
        return UP

    wait({"tcp": 80, "min_uptime": 2}, instance, lambda spec, timeout: (True, "connected"))
    assert len(calls) > 2


def test_the_check_is_tried_again_until_it_passes():
    answers = [(False, "refused"), (False, "refused"), (True, "connected")]
    assert wait({"tcp": 80}, UP, lambda spec, timeout: answers.pop(0)) == (True, "connected")
    assert answers == []


def test_no_spec_means_running_without_a_check():
    assert wait(None, UP, min_uptime=0.0) == (True, "running")


def test_a_spec_of_only_timing_means_running_without_a_check():
    assert wait({"min_uptime": 1}, UP) == (True, "running")


def test_a_check_is_not_made_while_the_app_has_no_pid():
    starting = Instance(None, 0, "starting", "")
    checked = []

    def check(spec, timeout):
        checked.append(1)
        return True, "connected"

    assert wait({"tcp": 80}, sequence(starting, starting, UP), check)[0]
    assert len(checked) == 1


def test_a_pid_change_within_min_uptime_fails_that_pass_but_the_wait_goes_on():
    restarted = Instance(11, 2, "running", "")
    assert wait({"tcp": 80}, sequence(UP, restarted),
                lambda spec, timeout: (True, "connected")) == (True, "connected")


def test_an_app_that_keeps_restarting_after_passing_fails_at_the_timeout():
    pids = iter(range(100, 100000))

    def instance():
        return Instance(next(pids), 1, "running", "exit 1")

    passed, seen = wait({"tcp": 80, "timeout": 10}, instance,
                        lambda spec, timeout: (True, "connected"))
    assert not passed
    assert seen.startswith("no pass within 10 s: it passed, then the app restarted")


def test_a_respawn_under_the_same_pid_within_min_uptime_is_seen_by_the_spawn_count():
    spawns = iter(range(1, 100000))

    def instance():
        return Instance(10, next(spawns), "running", "")

    passed, seen = wait({"tcp": 80, "timeout": 5}, instance,
                        lambda spec, timeout: (True, "connected"))
    assert not passed and "restarted within min_uptime" in seen


def test_a_crash_looping_app_fails_at_once_with_its_note():
    clock = Clock()
    looping = Instance(None, 5, "crash-looping", "exit 3")
    passed, seen = wait({"tcp": 80}, looping, clock=clock)
    assert not passed and seen == "the app crash-loops (5 spawns); exit 3"
    assert clock.slept == 0


def test_an_app_that_exits_again_after_respawning_fails_at_once():
    passed, seen = wait({"tcp": 80}, Instance(None, 2, "starting", "signal 9"))
    assert (passed, seen) == (False, "the app keeps exiting (2 spawns); signal 9")


def test_a_check_that_never_passes_fails_at_the_timeout_with_what_it_saw_last():
    answers = iter(range(100000))
    passed, seen = wait({"tcp": 80, "timeout": 3},
                        UP, lambda spec, timeout: (False, "refused {}".format(next(answers))))
    assert not passed and seen.startswith("no pass within 3 s: refused ")
    assert seen != "no pass within 3 s: refused 0"


def test_an_app_that_never_starts_fails_at_the_timeout_saying_so():
    passed, seen = wait({"tcp": 80, "timeout": 1}, Instance(None, 0, "starting", ""))
    assert (passed, seen) == (False, "no pass within 1 s: the app did not start")


def test_the_check_is_never_given_more_time_than_is_left():
    timeouts = []

    def check(spec, timeout):
        timeouts.append(timeout)
        return False, "refused"

    wait({"tcp": 80, "timeout": 1, "interval": 0.5}, UP, check)
    assert timeouts and max(timeouts) <= 1.0 and min(timeouts) >= 0.1
