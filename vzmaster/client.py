"""``vzmaster.Client``: drive one node's vzslave over SSH (or a local child process).

    with Client("node1", user="root") as node:
        info = node.upload_image("images/myapp.txz", progress=print)
        node.unpack(info.name, bundle="myapp")

Remote failures raise the VzError subclass of their wire code; connection and
protocol failures raise TransportError subclasses (vzmaster/errors.py draws the tree).
After a TransportError the client is closed: open a new one (an interrupted upload
then resumes where it stopped).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import queue
import threading
from types import TracebackType
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple, Sequence, overload

from vzmaster.digests import DigestCache
from vzmaster.errors import ConnectError, ConnectionLostError, ProtocolError, TransportError
from vzmaster.transports import SSHOptions, Transport, connect
from vzslave.conversation import (
    ANSWERED,
    CALL,
    CLIENT,
    CLIENT_STREAM,
    CLOSED,
    Conversation,
    ViolationError,
)
from vzslave.errors import (
    BadFrameError,
    FrameTooLargeError,
    VersionMismatchError,
    VzError,
    error_from_code,
)
from vzslave.names import validate_name
from vzslave.protocol import (
    MAX_DATA,
    SUPPORTED_VERSIONS,
    Cancel,
    Data,
    Decoder,
    End,
    Error,
    Frame,
    Reply,
    Request,
    encode,
)
from vzslave.records import (
    AppDiff,
    AppInfo,
    BundleInfo,
    ContainerStatus,
    HealthResult,
    FirewallStatus,
    ImageInfo,
    NodeFacts,
    PartialInfo,
    ReleaseInfo,
    RunResult,
    VolumeInfo,
    from_wire,
    optional_from_wire,
)

Progress = Callable[[int, int], None]  # (bytes the node holds, total bytes)
Steps = Callable[[str, str], None]  # (stage, detail) of a deploy or rollback on the node

_HASH_BLOCK = 1024 * 1024
_START_OPTIONS = {"runtime", "runtime_args", "log_max", "log_keep", "syslog", "monitor"}


class NodeInfo(NamedTuple):
    """What the hello exchange established."""

    version: int
    facts: NodeFacts
    ops: list[str]
    limits: dict[str, int]


class Client:
    """A session with one node's vzslave."""

    def __init__(self, host: str | None = None, *, user: str | None = None,
                 port: int | None = None, key_filename: str | Sequence[str] | None = None,
                 password: str | None = None, known_hosts: str | None = None,
                 trust_new_host: bool = False, via: str = "paramiko",
                 connect_timeout: float = 15.0, ssh_config: str | None = "~/.ssh/config",
                 ssh_program: Sequence[str] | None = None, sock: Any = None,
                 options: SSHOptions | None = None, transport: Transport | None = None,
                 digests: DigestCache | None = None) -> None:
        """Connect to ``host`` and say hello; or to ``options``; or use a ready ``transport``.

        ``host`` is a hostname or ~/.ssh/config alias, or "local[:ROOT]" for a vzslave
        child on this machine. ``via`` picks paramiko (default) or the system's
        OpenSSH client (``ssh_program`` replaces "ssh", e.g. to run it in a netns).
        The keywords after ``host`` are the fields of ``SSHOptions``; ``options`` gives
        them as one record instead. ``digests`` caches the sha256 of pushed files
        (default: ~/.cache/vz).
        """
        self._digests = digests or DigestCache()
        if transport is None:
            given = SSHOptions(
                host or "", user=user, port=port, key_filename=key_filename,
                password=password, known_hosts=known_hosts, trust_new_host=trust_new_host,
                via=via, connect_timeout=connect_timeout, ssh_config=ssh_config,
                ssh_program=ssh_program, sock=sock)
            if options is None:
                if host is None:
                    raise ValueError("give a host, options or a transport")
                options = given
            elif given != SSHOptions(""):
                raise ValueError("give the connection options as keywords or as options=, "
                                 "not both")
            transport = connect(options)
        self._transport = transport
        self._decoder = Decoder()
        self._conversation = Conversation(CLIENT)  # the call rules, checked both ways
        self._ids = itertools.count(1)
        self._closed = False
        self._stream: LogLines | None = None  # a logs call the caller has not finished
        self._in_io = False  # inside a send or a receive: an interruption breaks the stream
        try:
            self.info = self._hello()
        except ConnectionLostError as exc:
            self.close()
            raise ConnectError(
                "{} (before answering hello). Check on the node that the command of its "
                "'Subsystem vzslave' line runs: sshd discards a subsystem's error output, "
                "so run it by hand there; vzslave logs to ROOT/log/vzslave.log".format(exc)
            ) from exc
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """End the session; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._transport.close()

    @property
    def facts(self) -> NodeFacts:
        """The node's facts as of connecting (``hello()`` reads them afresh)."""
        return self.info.facts

    # -- the API -------------------------------------------------------------

    def hello(self) -> NodeFacts:
        """The node's facts, read now: hostname, kernel, arch, init, free disk, ..."""
        self.info = self._hello()
        return self.info.facts

    def images(self) -> list[ImageInfo]:
        """The images on the node."""
        return [from_wire(ImageInfo, item) for item in self._call("image.list")["images"]]

    def probe_image(self, name: str) -> tuple[ImageInfo | None, PartialInfo | None]:
        """What the node holds of image ``name``: the published image, a kept prefix."""
        result = self._call("image.probe", name=name)
        return (optional_from_wire(ImageInfo, result["image"]),
                optional_from_wire(PartialInfo, result["partial"]))

    def upload_image(self, path: str, name: str | None = None,
                     progress: Progress | None = None) -> ImageInfo:
        """Upload the image file ``path`` (as ``name``, default its file name).

        Resumes an earlier interrupted upload of the same bytes, and sends nothing if
        the node already has them under that name. Verified end to end by sha256.
        """
        name = validate_name("image", name or os.path.basename(path))
        with open(path, "rb") as source:
            st = os.fstat(source.fileno())
            size = st.st_size
            digest = self._digests.lookup(path, st)
            image, partial = self.probe_image(name)
            if image is not None and image.size == size:
                if digest is None:
                    digest = _sha256_of(source, size).hexdigest()
                    self._digests.store(path, st, digest)
                if digest == image.sha256:
                    if progress:
                        progress(size, size)
                    return image
            hasher = None if digest else hashlib.sha256()
            offset = 0
            if partial is not None and 0 < partial.size <= size:
                prefix = _sha256_of(source, partial.size)
                if prefix.hexdigest() == partial.sha256:
                    offset = partial.size
                    hasher = None if digest else prefix
            source.seek(offset)
            result, sent = self._stream_call(
                "image.put", source, size - offset, hasher, digest, progress, offset,
                name=name, size=size, offset=offset)
            if digest is None:
                self._digests.store(path, st, sent)
        return from_wire(ImageInfo, result["image"])

    def remove_image(self, name: str) -> None:
        """Remove image ``name`` from the node."""
        self._call("image.remove", name=name)

    def unpack(self, image: str, bundle: str, keep_setid: bool = False) -> BundleInfo:
        """Unpack ``image`` into the bundle ``bundle``, replacing it atomically."""
        args: dict[str, Any] = {"image": image, "name": bundle}
        if keep_setid:
            args["keep_setid"] = True
        return from_wire(BundleInfo, self._call("bundle.unpack", **args)["bundle"])

    def bundles(self) -> list[BundleInfo]:
        """The bundles on the node."""
        return [from_wire(BundleInfo, item) for item in self._call("bundle.list")["bundles"]]

    def remove_bundle(self, name: str) -> None:
        """Remove bundle ``name`` from the node."""
        self._call("bundle.remove", name=name)

    def start(self, name: str, *, override: bool = False, runtime: str | None = None,
              runtime_args: Sequence[str] | None = None, log_max: int | None = None,
              log_keep: int | None = None, syslog: bool | None = None, monitor: bool | None = None,
              wait: bool = True, min_uptime: float | None = None) -> ContainerStatus:
        """Have the node's init run container ``name`` from its bundle.

        With ``wait`` (the default), returns once the app has stayed up for
        ``min_uptime`` seconds (default 1), or is seen crash-looping, or ~10 s have
        passed: check ``state`` ("running", "crash-looping" with ``last_exit`` and
        ``last_error``, ...). Without ``wait``, as soon as init has been told (busybox
        init takes up to ~2 s). ``runtime`` is "builtin" (vz's runner), "runc" or
        "crun"; ``runtime_args`` are global options for that runtime, each ``--name`` or
        ``--name=value`` (``["--cgroup-manager=disabled"]`` lets crun run where the
        node's cgroups cannot be set up). ``log_max`` bytes per log file and
        ``log_keep`` rotated files bound its logs; ``syslog`` also sends its output to
        the node's syslog. By default a small monitor of ours stays as the app's parent:
        it holds the log to a hard cap, sees exit codes and ends what the app leaves
        behind when it ends. ``monitor=False`` leaves nothing of ours beside the app
        (unless a PID namespace or ``syslog`` needs the monitor): its log is then rotated
        at each (re)start and cut back at each session of a client. Options not given
        keep their earlier values. ``override`` restores an entry the node's
        administrator disabled.
        """
        args: dict[str, Any] = {"name": name}
        if override:
            args["override"] = True
        if not wait:
            args["wait"] = False
        if runtime_args is not None:
            args["runtime_args"] = list(runtime_args)
        if min_uptime is not None:
            args["min_uptime"] = float(min_uptime)
        for key, value in (("runtime", runtime), ("log_max", log_max),
                           ("log_keep", log_keep), ("syslog", syslog),
                           ("monitor", monitor)):
            if value is not None:
                args[key] = value
        return from_wire(ContainerStatus, self._call("container.start", **args)["status"])

    def stop(self, name: str, grace: float = 10.0) -> ContainerStatus:
        """Stop container ``name``: TERM, then KILL after ``grace`` seconds; unmount."""
        return from_wire(ContainerStatus, self._call(
            "container.stop", name=name, grace=float(grace))["status"])

    def restart(self, name: str, grace: float = 10.0) -> ContainerStatus:
        """Stop and start container ``name`` (so it runs its bundle as it is now)."""
        return from_wire(ContainerStatus, self._call(
            "container.restart", name=name, grace=float(grace))["status"])

    @overload
    def status(self) -> list[ContainerStatus]: ...

    @overload
    def status(self, name: str) -> ContainerStatus: ...

    def status(self, name: str | None = None) -> ContainerStatus | list[ContainerStatus]:
        """The status of container ``name``; of every container without a name."""
        found = [from_wire(ContainerStatus, item) for item in self._call(
            "container.status", name=name or "")["containers"]]
        return found if name is None else found[0]

    def logs(self, name: str, tail: int = 100, follow: bool = False,
             cursor: tuple[int, int] | None = None) -> LogLines:
        """The lines of container ``name``'s log: the last ``tail`` ones (or those after
        ``cursor``), then, with ``follow``, new lines as they come, until closed.

        Iterate over the result for lines (str, without the newline); its ``cursor``
        resumes a later call where this one stopped. Closing it (or starting another
        call) stops a follow. Rotations of the log do not lose or repeat lines.
        """
        args: dict[str, Any] = {"name": name, "lines": tail, "follow": follow}
        if cursor is not None:
            args["cursor"] = list(cursor)
        self._finish_stream()
        call_id = next(self._ids)
        with self._call_scope():
            self._send(Request(call_id, "container.logs", args))
        self._stream = LogLines(self, call_id, (cursor[0], cursor[1]) if cursor else (0, 0))
        return self._stream

    # -- apps ----------------------------------------------------------------

    def deploy(self, app: str, image: str, *, env: dict[str, str] | None = None,
               secrets: dict[str, str] | None = None, volumes: dict[str, str] | None = None,
               health: dict[str, Any] | None = None, release: Sequence[str] | None = None,
               keep: int = 3, override: bool = False, grace: float = 10.0,
               labels: dict[str, str] | None = None, progress: Steps | None = None,
               **start_options: Any) -> ReleaseInfo:
        """Deploy image ``image`` (already on the node) as ``app``'s next release.

        The node unpacks it, runs ``release`` (a command, e.g. migrations) once in it,
        switches the app's container to it and waits for ``health`` ({"tcp": PORT},
        {"http": URL} or {"cmd": ARGV}, with timeout, interval, min_uptime). A failed
        check raises HealthCheckError, with the previous release running again. ``env``
        is set over the image's environment; ``secrets`` likewise, but kept out of every
        file, listing and log; ``volumes`` maps names to paths in the container.
        ``labels`` are the caller's own marks, kept with the release (the fleet's name).
        ``progress(stage, detail)`` hears each step as the node starts it: unpack,
        release, switch, health.
        ``start_options``: runtime, runtime_args, log_max, log_keep, syslog, monitor.
        """
        args = _release_args("deploy", env, secrets, volumes, health, release, labels,
                             start_options)
        args.update(app=app, image=image, keep=keep, grace=float(grace))
        if override:
            args["override"] = True
        return from_wire(ReleaseInfo,
                         self._call_with_steps("app.deploy", progress, **args)["release"])

    def diff(self, app: str, sha256: str, *, env: dict[str, str] | None = None,
             secrets: dict[str, str] | None = None, volumes: dict[str, str] | None = None,
             health: dict[str, Any] | None = None, release: Sequence[str] | None = None,
             labels: dict[str, str] | None = None, **start_options: Any) -> AppDiff:
        """What ``deploy`` of the image whose sha256 is ``sha256``, with these settings,
        would change in ``app``: ``changes`` names the fields that differ from its
        current release (empty: nothing). The image need not be on the node."""
        args = _release_args("diff", env, secrets, volumes, health, release, labels,
                             start_options)
        args.update(app=app, sha256=sha256)
        return from_wire(AppDiff, self._call("app.diff", **args)["diff"])

    def releases(self, app: str) -> list[ReleaseInfo]:
        """``app``'s kept releases, newest first; ``current`` marks the one it runs."""
        return [from_wire(ReleaseInfo, item)
                for item in self._call("release.list", app=app)["releases"]]

    def rollback(self, app: str, release: int | None = None,
                 grace: float = 10.0, progress: Steps | None = None) -> ReleaseInfo:
        """Switch ``app`` to ``release`` (default: the one before the current one),
        health-checked as a deploy; nothing is transferred. ``progress`` as for deploy."""
        args: dict[str, Any] = {"app": app, "grace": float(grace)}
        if release is not None:
            args["release"] = release
        return from_wire(ReleaseInfo,
                         self._call_with_steps("app.rollback", progress, **args)["release"])

    def check(self, app: str) -> HealthResult:
        """``app``'s health check tried once now (no retries)."""
        return from_wire(HealthResult, self._call("app.check", app=app)["health"])

    def apps(self) -> list[AppInfo]:
        """Every app on the node."""
        return [from_wire(AppInfo, item) for item in self._call("app.list")["apps"]]

    def remove_app(self, app: str, volumes: bool = False, grace: float = 10.0) -> None:
        """Stop ``app`` and delete its releases, settings and secrets; its volumes too
        with ``volumes``."""
        self._call("app.remove", app=app, volumes=volumes, grace=float(grace))

    def run(self, app: str, argv: Sequence[str], timeout: float = 600.0) -> RunResult:
        """Run ``argv`` once in ``app``'s current release: its output and exit status."""
        return from_wire(RunResult, self._call("app.run", app=app, argv=list(argv),
                                                timeout=float(timeout))["result"])

    def volumes(self, app: str) -> list[VolumeInfo]:
        """``app``'s volumes."""
        return [from_wire(VolumeInfo, item)
                for item in self._call("volume.list", app=app)["volumes"]]

    def remove_volume(self, app: str, name: str) -> None:
        """Delete volume ``name`` of ``app`` (refused while a running release mounts it)."""
        self._call("volume.remove", app=app, name=name)

    # -- the firewall --------------------------------------------------------

    def firewall(self) -> FirewallStatus:
        """The node's firewall chain: what vz applied, whether it is active, and its
        ``drift`` (how it was changed by hand since)."""
        return from_wire(FirewallStatus, self._call("firewall.status")["firewall"])

    def apply_firewall(self, ports: Sequence[str | tuple[int, str]], ssh_port: int = 22,
                       backend: str | None = None) -> FirewallStatus:
        """Make the node's own chain accept SSH and ``ports`` ("8080/tcp", "53/udp",
        "8080" for tcp, or (8080, "tcp")) and drop every other packet that comes in.

        The port of this SSH session and those the node's sshd listens on always stay
        open, and ``ssh_port`` too (0: no other). ``backend`` forces "iptables" or
        "nft" (default: iptables-restore where the node has it, else nft). One
        transaction: on FirewallError the node's rules are as they were.
        """
        args: dict[str, Any] = {"ports": [_port_arg(port) for port in ports],
                                "ssh_port": ssh_port}
        if backend is not None:
            args["backend"] = backend
        return from_wire(FirewallStatus, self._call("firewall.apply", **args)["firewall"])

    def remove_firewall(self) -> FirewallStatus:
        """Delete vz's chain and its jump from INPUT (or vz's nft table), and nothing else."""
        return from_wire(FirewallStatus, self._call("firewall.remove")["firewall"])

    # -- calls ---------------------------------------------------------------

    def _hello(self) -> NodeInfo:
        try:
            result = self._call("hello", versions=list(SUPPORTED_VERSIONS), client="vzmaster")
        except VersionMismatchError as exc:
            theirs = exc.details.get("versions") or []
            newer = bool(theirs) and min(theirs) > max(SUPPORTED_VERSIONS)
            raise VersionMismatchError("{}. {}".format(exc.message, (
                "This vzmaster is older than the node: upgrade vzmaster" if newer else
                "Upgrade the node's agent: vzmaster node upgrade NODE")), exc.details) from exc
        try:
            return NodeInfo(result["version"], from_wire(NodeFacts, result["facts"]),
                            list(result["ops"]), dict(result["limits"]))
        except (KeyError, TypeError) as exc:
            raise ProtocolError("malformed hello reply: {!r}".format(exc)) from exc

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        self._finish_stream()
        call_id = next(self._ids)
        with self._call_scope():
            self._send(Request(call_id, op, args))
            return self._result(self._receive())

    def _call_with_steps(self, op: str, progress: Steps | None,
                         **args: Any) -> dict[str, Any]:
        """A call whose node may stream its steps (``STAGE\tDETAIL`` lines) before the
        result; asked for only when someone listens, so older nodes are called as before."""
        if progress is None:
            return self._call(op, **args)
        self._finish_stream()
        with self._call_scope():
            self._send(Request(next(self._ids), op, dict(args, progress=True)))
            while True:
                frame = self._receive()
                if not isinstance(frame, Data):
                    return self._result(frame)
                for line in frame.data.decode("utf-8", "replace").splitlines():
                    stage, _, detail = line.partition("\t")
                    progress(stage, detail)

    @contextlib.contextmanager
    def _call_scope(self) -> Iterator[None]:
        """Close the session if a call is abandoned midway (Ctrl-C, a local error):
        the node may be mid-stream and the next call would read its leftovers. A call
        that ended in step (answered, or an upload the node was told to cancel and
        answered) leaves the session open: the table says when the ends are in step."""
        try:
            yield
        except BaseException:
            if not self._conversation.between_calls:
                self.close()
            raise

    def _stream_call(self, op: str, source: BinaryIO, length: int, hasher: Any,
                     digest: str | None, progress: Progress | None, done: int,
                     **args: Any) -> tuple[dict[str, Any], str]:
        """A call whose request is followed by ``length`` bytes of ``source``.

        The End frame carries the sha256 of the whole file: ``digest`` if known, else
        what ``hasher`` (primed with any prefix not sent) makes of the bytes sent.
        Abandoned midway (Ctrl-C, a raising ``progress``, a file that shrank), the
        call is cancelled: the node keeps the prefix it has, and the session goes on.
        """
        self._finish_stream()
        call_id = next(self._ids)
        with self._call_scope():
            self._send(Request(call_id, op, args))
            total = done + length
            overhead = len(encode(Data(call_id, bytes(65536)))) - 65536
            chunk_size = min(self._transport.frame_size - overhead, MAX_DATA)
            # sha256 runs in a thread beside the sending (hashlib releases the GIL):
            # inline it would cost ~18% of paramiko's throughput on this kind of CPU.
            chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
            hashing = None
            if hasher is not None:
                hashing = threading.Thread(target=_hash_queue, args=(hasher, chunks),
                                           daemon=True)
                hashing.start()
            early: Frame | None = None
            try:
                if progress:
                    progress(done, total)  # where a resumed upload starts
                remaining = length
                while remaining > 0:
                    chunk = source.read(min(chunk_size, remaining))
                    if not chunk:
                        raise OSError("the image file shrank while it was being sent; push it "
                                      "again when it is complete")
                    self._send(Data(call_id, chunk))
                    if hashing is not None:
                        chunks.put(chunk)
                    remaining -= len(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                    early = self._poll()
                    if early is not None:
                        break  # the node answered mid-stream; it drops data until End
            except BaseException:
                self._cancel_stream(call_id)
                raise
            finally:
                if hashing is not None:
                    chunks.put(None)
                    hashing.join()
            final = digest or hasher.hexdigest()
            if self._conversation.state != CLOSED:  # else the node said its last
                self._send(End(call_id, {"sha256": final}))
            return self._result(early if early is not None else self._receive()), final

    def _cancel_stream(self, call_id: int) -> None:
        """End our stream of call ``call_id`` with a Cancel and take the node's final
        frame, so that the session stays in step; else close it."""
        if self._closed or self._in_io:
            return  # a frame may be half sent or half read: only closing is safe
        try:
            if self._conversation.state in (CLIENT_STREAM, ANSWERED):
                self._send(Cancel(call_id))
            if self._conversation.state == CALL:
                self._receive()  # the final frame: the table refuses any other
        except BaseException:
            self.close()

    def _finish_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _stream_next(self) -> bytes | dict[str, Any]:
        """The next chunk of the node stream in flight, or the call's result."""
        with self._call_scope():
            frame = self._receive()
            return frame.data if isinstance(frame, Data) else self._result(frame)

    def _stream_cancel(self, call_id: int) -> None:
        """Ask the node to stop the stream of call ``call_id``; its final frame follows."""
        with self._call_scope():
            self._send(Cancel(call_id))

    def _result(self, frame: Frame) -> dict[str, Any]:
        """The result of a call's final frame (the table let no other through), or the
        node's error raised."""
        if isinstance(frame, Reply):
            return frame.result
        assert isinstance(frame, Error)
        raise error_from_code(frame.code, frame.message, frame.details)

    def _send(self, frame: Frame) -> None:
        if self._closed:
            raise ConnectionLostError("this client is closed; open a new one")
        try:
            self._conversation.send(frame)
        except ViolationError as exc:  # a bug of ours; the node would end the session
            self._broken(ProtocolError("vzmaster broke the protocol: {}".format(exc)))
        data = encode(frame)
        self._in_io = True
        try:
            self._transport.send(data)
        except TransportError as exc:
            self._broken(exc)
        self._in_io = False

    def _receive(self, timeout: float | None = None) -> Frame:
        """The next frame from the node, checked against the table."""
        while True:
            try:
                frame = self._decoder.next_frame()
            except (BadFrameError, FrameTooLargeError) as exc:
                self._broken(ProtocolError("the node sent garbage: {} (is something on the "
                                           "node printing to vzslave's stdout?)".format(exc)))
            if frame is not None:
                try:
                    self._conversation.receive(frame)
                except ViolationError as exc:
                    self._broken(ProtocolError("the node broke the protocol: {}".format(exc)))
                if self._conversation.state == CLOSED:
                    self.close()  # the node ends the session after this frame
                return frame
            if self._decoder.eof:
                self._broken(self._transport.failure())
            self._in_io = True
            try:
                data = self._transport.recv(timeout)
            except TimeoutError:
                self._in_io = False  # nothing was read
                raise
            except TransportError as exc:
                self._broken(exc)
            self._decoder.feed(data)
            self._in_io = False

    def _poll(self) -> Frame | None:
        if not self._transport.readable():
            return None
        try:
            return self._receive(timeout=0)
        except TimeoutError:
            return None

    def _broken(self, exc: TransportError) -> Any:
        # The stream may be mid-frame: no way to resynchronise, so end the session.
        self.close()
        raise exc


def _release_args(method: str, env: dict[str, str] | None, secrets: dict[str, str] | None,
                  volumes: dict[str, str] | None, health: dict[str, Any] | None,
                  release: Sequence[str] | None, labels: dict[str, str] | None,
                  start_options: dict[str, Any]) -> dict[str, Any]:
    """The arguments a release's settings make, for app.deploy and app.diff alike."""
    unknown = sorted(set(start_options) - _START_OPTIONS)
    if unknown:
        raise TypeError("{}() got unexpected keyword arguments: {}".format(
            method, ", ".join(unknown)))
    args: dict[str, Any] = {key: dict(value) for key, value in (
        ("env", env), ("secrets", secrets), ("volumes", volumes), ("health", health),
        ("labels", labels)) if value is not None}
    if release is not None:
        args["release"] = list(release)
    args.update({key: value for key, value in start_options.items() if value is not None})
    return args


def _port_arg(port: str | tuple[int, str]) -> dict[str, Any]:
    """{"port": 8080, "proto": "tcp"} from "8080/tcp", "8080" or (8080, "tcp"); the node
    checks the range and the protocol."""
    if isinstance(port, tuple):
        number, proto = port
    else:
        text, _, proto = str(port).partition("/")
        if not text.strip().isdigit():
            raise ValueError("a port is 'NUMBER/PROTO' such as '8080/tcp', not {!r}".format(port))
        number = int(text)
    return {"port": number, "proto": proto or "tcp"}


def _sha256_of(source: BinaryIO, length: int) -> Any:
    """The sha256 object of the first ``length`` bytes of ``source``."""
    hasher = hashlib.sha256()
    source.seek(0)
    remaining = length
    while remaining > 0:
        block = source.read(min(_HASH_BLOCK, remaining))
        if not block:
            break
        hasher.update(block)
        remaining -= len(block)
    return hasher


def _hash_queue(hasher: Any, chunks: queue.Queue[bytes | None]) -> None:
    while True:
        chunk = chunks.get()
        if chunk is None:
            return
        hasher.update(chunk)



class LogLines:
    """The lines a ``Client.logs`` call streams; iterate, then read ``cursor``."""

    def __init__(self, client: Client, call_id: int, cursor: tuple[int, int]) -> None:
        self._client = client
        self._id = call_id
        self._partial = b""
        self._lines: list[bytes] = []
        self._done = False
        self.cursor = cursor  # where the node's log stream stands after the last line read

    def __iter__(self) -> LogLines:
        return self

    def __next__(self) -> str:
        while not self._lines:
            if self._done:
                if self._partial:
                    line, self._partial = self._partial, b""
                    return line.decode("utf-8", "replace")
                raise StopIteration
            self._take_next()
        return self._lines.pop(0).decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the stream (a follow never ends by itself); safe to call twice."""
        if self._done:
            return
        self._client._stream_cancel(self._id)
        while not self._done:
            self._take_next(keep=False)
        self._lines.clear()

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_next(self, keep: bool = True) -> None:
        try:
            item = self._client._stream_next()
        except VzError:
            self._done = True  # the node's error was the call's final frame
            raise
        if isinstance(item, bytes):
            if not keep:
                return
            lines = (self._partial + item).split(b"\n")
            self._partial = lines.pop()
            self._lines.extend(lines)
            return
        self._done = True
        inode, offset = item["cursor"]
        self.cursor = (int(inode), int(offset))
