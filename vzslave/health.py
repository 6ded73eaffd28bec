"""Health checks: is a newly switched-to release up and serving? Run by vzslave.

A spec is one of::

    {"tcp": PORT}                          a connect to 127.0.0.1:PORT
    {"http": "http://127.0.0.1:PORT/PATH"} a GET answered 2xx or 3xx
    {"cmd": [ARGV]}                        exit 0, run as a one-off of the release
                                           (its root, its user: vzslave/oneoff.py)

with ``timeout`` (seconds to pass, default 30), ``interval`` (between tries, default
0.5) and ``min_uptime`` (how long the app must then stay up without a respawn, default
2). No spec, or one without tcp, http or cmd, means "running for min_uptime". tcp and
http checks of an app with a network namespace of its own are made from inside it.
"""

import os
import socket
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from vzslave import linux
from vzslave.errors import BadRequestError
from vzslave.runio import read_to_end

DEFAULTS = {"timeout": 30.0, "interval": 0.5, "min_uptime": 2.0}
LIMITS = {"timeout": (0.1, 3600.0), "interval": (0.05, 60.0), "min_uptime": (0.0, 600.0)}
_LOCAL = ("127.0.0.1", "localhost", "::1")
_KINDS = ("tcp", "http", "cmd")


class Instance(NamedTuple):
    """The new release's running instance, as the check needs it."""

    pid: Optional[int]  # alive and of the new release; None while not (yet) so
    spawns: int  # spawns of the new release so far
    state: str  # ContainerState
    note: str  # its last exit or error, for the failure's message


def check_spec(spec: Any) -> Optional[Dict[str, Any]]:
    """The health spec with its defaults filled in; None for none; BadRequestError."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise BadRequestError("health must be a map such as {\"tcp\": 8080}",
                              {"argument": "health"})
    kinds = [kind for kind in _KINDS if kind in spec]
    unknown = sorted(set(spec) - set(_KINDS) - set(DEFAULTS))
    if unknown or len(kinds) > 1:
        raise BadRequestError(
            "health has at most one of tcp, http or cmd, plus timeout, interval and "
            "min_uptime{}".format(", not {}".format(", ".join(map(str, unknown)))
                                  if unknown else ""), {"argument": "health"})
    kind = kinds[0] if kinds else ""  # none: "running for min_uptime", timed as given
    value = spec.get(kind)
    checked: Dict[str, Any] = {}
    if kind == "tcp":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise BadRequestError("health tcp must be a port from 1 to 65535, not {!r}".format(
                value), {"argument": "health"})
        checked["tcp"] = value
    elif kind == "http":
        checked["http"] = _check_url(value)
    elif kind == "cmd":
        from vzslave.releases import check_command
        checked["cmd"] = check_command(value, "health cmd")
    for key, default in DEFAULTS.items():
        number = spec.get(key, default)
        low, high = LIMITS[key]
        if (isinstance(number, bool) or not isinstance(number, (int, float))
                or not low <= number <= high):
            raise BadRequestError("health {} must be a number of seconds from {} to {}, not "
                                  "{!r}".format(key, low, high, number), {"argument": "health"})
        checked[key] = float(number)
    return checked


def _check_url(value: Any) -> str:
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if (parts is not None and parts.scheme == "http" and parts.hostname in _LOCAL
                and port and "\0" not in value and len(value) <= 2048):
            return value
    raise BadRequestError("health http must be a URL on this node with its port, such as "
                          "http://127.0.0.1:8080/up, not {!r}".format(str(value)[:200]),
                          {"argument": "health"})


def probe(spec: Dict[str, Any], timeout: float) -> Tuple[bool, str]:
    """One try of a tcp or http check: (passed, what was seen)."""
    if "tcp" in spec:
        try:
            with socket.create_connection(("127.0.0.1", spec["tcp"]), timeout=timeout):
                return True, "tcp 127.0.0.1:{}: connected".format(spec["tcp"])
        except OSError as exc:
            return False, "tcp 127.0.0.1:{}: {}".format(spec["tcp"], exc.strerror or exc)
    return _http(spec["http"], timeout)


def _http(url: str, timeout: float) -> Tuple[bool, str]:
    import http.client
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                            timeout=timeout)
    try:
        path = parts.path or "/"
        connection.request("GET", path + ("?" + parts.query if parts.query else ""),
                           headers={"User-Agent": "vzslave-health", "Connection": "close"})
        response = connection.getresponse()
        body = response.read(512).decode("utf-8", "replace")
        passed = 200 <= response.status < 400
        return passed, "GET {}: {} {}{}".format(url, response.status, response.reason,
                                               "" if passed else ": " + body.strip())
    except (OSError, http.client.HTTPException) as exc:
        return False, "GET {}: {}".format(url, getattr(exc, "strerror", None) or exc)
    finally:
        connection.close()


def probe_in(pid: Optional[int], spec: Dict[str, Any], timeout: float) -> Tuple[bool, str]:
    """``probe``, from inside the network namespace of ``pid`` (None: the node's)."""
    if pid is None:
        return probe(spec, timeout)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - reports through the pipe
        try:
            os.close(reader)
            fd = os.open("/proc/{}/ns/net".format(pid), os.O_RDONLY | os.O_CLOEXEC)
            linux.setns(fd, linux.CLONE_NEWNET)
            passed, seen = probe(spec, timeout)
            os.write(writer, ("1" if passed else "0").encode() + seen.encode()[:4000])
        except BaseException as exc:
            os.write(writer, "0cannot enter the app's network namespace: {}".format(
                exc).encode()[:4000])
        finally:
            os._exit(0)
    os.close(writer)
    try:
        data = read_to_end(reader)
    finally:
        os.close(reader)
        os.waitpid(child, 0)
    text = data.decode("utf-8", "replace")
    return text[:1] == "1", text[1:] or "the check process died"


def wait_healthy(spec: Optional[Dict[str, Any]], min_uptime: float,
                 instance: Callable[[], Instance],
                 check: Callable[[Dict[str, Any], float], Tuple[bool, str]],
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Tuple[bool, str]:
    """Wait until the check passes and the instance then stays up, without a respawn,
    for min_uptime: (True, what passed) or (False, what was seen last) at the timeout
    or as soon as the app crash-loops."""
    timeout = spec["timeout"] if spec else DEFAULTS["timeout"]
    interval = spec["interval"] if spec else 0.1
    deadline = clock() + timeout
    seen: List[str] = ["the app did not start"]
    while True:
        now = instance()
        if now.state == "crash-looping" or (now.pid is None and now.spawns > 1):
            return False, "the app {} ({} spawns); {}".format(
                "crash-loops" if now.state == "crash-looping" else "keeps exiting",
                now.spawns, now.note or seen[-1])
        if now.pid is not None:
            if spec is None or not any(kind in spec for kind in _KINDS):
                passed, text = True, "running"
            else:
                passed, text = check(spec, max(min(interval * 4, deadline - clock()), 0.1))
            seen.append(text)
            if passed:
                stayed, note = _stays_up(now, min_uptime, instance, clock, sleep)
                if stayed:
                    return True, text
                seen.append(note)
        elif now.note:
            seen.append(now.note)
        if clock() >= deadline:
            return False, "no pass within {:g} s: {}".format(timeout, seen[-1])
        sleep(interval)


def _stays_up(first: Instance, min_uptime: float, instance: Callable[[], Instance],
              clock: Callable[[], float], sleep: Callable[[float], None]) -> Tuple[bool, str]:
    until = clock() + min_uptime
    while clock() < until:
        sleep(min(0.1, max(until - clock(), 0.0)))
        now = instance()
        if now.pid != first.pid or now.spawns != first.spawns:
            return False, "it passed, then the app restarted within min_uptime ({:g} s){}".format(
                min_uptime, ": " + now.note if now.note else "")
    return True, ""
