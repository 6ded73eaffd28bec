"""The vzslave agent as one file: a zipapp a fresh node runs with its own python3.

``build_agent(DIR)`` writes ``DIR/vzslave-VERSION.pyz``, which ``vzmaster node add``
uploads to ``/usr/local/lib/vz/`` and runs as ``python3 vzslave-VERSION.pyz "$@"``
(``/usr/local/bin/vzslave``). By hand: ``python -m vzmaster.agent build [-o DIR]``.

What is in it (``agent_files()``):

    __main__.py                 the bootstrap below (MAIN), then vzslave.server.main()
    vzslave/**.py               the installed vzslave package, sources only
    _vendor/msgpack/*.py        the installed msgpack's pure-Python modules (fallback.py
                                and what it needs; never the compiled _cmsgpack), and
    _vendor/msgpack/COPYING     its licence (Apache-2.0), when its metadata has one

Decisions:

- **A zipapp with a vendored pure-Python msgpack**, not pip on the node: cheap VPS
  images often have python3 but neither pip nor msgpack (or a distribution's 0.x,
  which vzslave cannot use), and one file is one upload, one sha256 to compare and
  one rename to publish. The node's own msgpack is preferred when it imports and is
  1.0 or newer (a distribution's is compiled, as Debian 12's 1.0.3: here the compiled
  1.2.4 unpacks a reply of 200 statuses in 0.09 ms, its fallback in 1.7); otherwise
  ``MAIN`` drops any half-imported msgpack from sys.modules and puts ``PYZ/_vendor``
  first on sys.path. There the msgpack package's ``__path__`` is inside the zip, which
  zipimport serves with sources only, so its ``from ._cmsgpack import`` fails at once
  and it takes ``fallback``: nothing else is tried. ``MSGPACK_PUREPYTHON`` is not set:
  it is not needed for that, and a variable put in os.environ would be inherited by
  every process vzslave starts.
- **The bundled msgpack must run on Python 3.6** (nodes may have it): every build runs
  vermin (``-t=3.6-``) over the vendored sources and refuses with ``AgentError`` if
  they need more, or if vermin is missing. The installed msgpack must be 1.0 or newer
  (vzslave's own floor). The integration tests run the zipapp on a real 3.6.
- **Reproducible**: entries sorted, dated 1980-01-01, mode 0644, made on Unix, no
  directory entries, no ``__pycache__`` or ``.pyc``; the same sources give the same
  bytes, so callers compare sha256 (and ``agent_bytes`` keeps the result per digest of
  its inputs). Deflate is reproducible only for one zlib (zlib-ng gives other bytes),
  which is one more reason for the default below.
- **Stored by default.** Measured by bench/agent.py (2 cores shared with a CI run,
  medians of 30, round robin): stored 628,436 bytes, deflated 196,690 (31 %), both
  under the 1 MB aimed for. Deflated starts slower every time, stored costs more once
  (~0.35 s more upload at 10 Mbit/s): spawn to hello reply 1-5 % slower deflated
  (Python 3.11: 191/210/229 ms stored against 201/219/231 ms in three runs; 3.6:
  179 against 186 ms), vzrun's import of the runner 1-3 ms slower (31 against 33 ms);
  and stored bytes are the same whatever zlib (or zlib-ng) this machine has.
  ``compression="deflated"`` remains for a node that unpacks the file (below).
- **No .pyc in the zip**: bytecode is tied to the node's Python, unknown at build time,
  and zipimport never writes a cache. That makes the zip slow to start, against the
  1.2x aimed for: spawn to hello reply 3.0-3.4x the installed, byte-compiled package on
  Python 3.11 (~210 ms against ~65), 2.0x on 3.6 (179 against 91 ms); vzrun's import
  of the runner, paid at every container spawn, 2.5-2.8x (31 against 12 ms) and 1.8x.
  Two causes, both measured: compiling the ~450 KB of source a session imports (the
  package without .pyc: 2.2x on 3.11, 1.65x on 3.6), and zipimport compiling every
  module twice (``get_filename`` compiles to learn the path, then ``exec_module``
  again: cProfile counts 75 ``compile()`` calls for 37 modules on 3.11; CPython
  gh-141276, open). Both go away once the node has bytecode: the zip extracted
  (``python3 -m zipfile -e``, 3.6 has it) and byte-compiled (``python3 -m
  compileall``) answers hello at 0.98-1.02x and imports the runner at 0.93-0.95x;
  .pyc of the node's Python added inside the zip, 1.04-1.12x. So ``vzmaster node add``
  keeps the uploaded .pyz (its sha256 is what the master compares), extracts and
  compiles it into ``/usr/local/lib/vz/vzslave-VERSION-SHA12/`` (a temporary directory
  renamed), and runs ``python3 -I DIR`` (vzmaster/provision/add.py); ``MAIN`` works from a
  directory too (tests/integration/test_agent_real.py). Its __pycache__ follows the
  ordinary rules: a Python upgrade recompiles, or compiles each time (~2x) where the
  directory is not writable. The .pyc-in-zip way changes the file's bytes, and
  zipimport checks timestamped .pyc against a mktime() of the zip's DOS date, in the
  node's local time zone: a changed TZ would make every .pyc silently stale (hash-based
  .pyc avoid that from 3.7 on, not on 3.6). Lazy imports in
  vzslave.server and handlers would shrink a session's compile but not the double
  compile, and reach into every op's module.
- **Works under ``python3 -I`` and ``-IS``**: the bootstrap needs only the standard
  library, and ROOT/bin/vzrun (``#!python3 -IS``, vzslave/launcher.py) puts
  ``PACKAGE_PARENT`` (here the .pyz itself) on sys.path and imports vzslave.runner,
  which never imports msgpack.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from typing import Literal, NamedTuple, Sequence

import vzslave
from vzslave.errors import Error
from vzslave.fs import atomic_write

Compression = Literal["stored", "deflated"]
COMPRESSIONS = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}
DEFAULT_COMPRESSION: Compression = "stored"
NODE_PYTHON = "3.6"  # the oldest Python a node may have (DEVELOPERS.md)
MIN_MSGPACK = (1, 0)
VENDOR = "_vendor"
DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: a fixed one
FILE_MODE = 0o100644  # a regular file, rw-r--r--
LICENCES = ("COPYING", "LICENSE", "LICENSE.txt", "NOTICE")

# The zipapp's __main__.py. Python 3.6 and the standard library only (vermin checks it
# in tests/unit/test_agent.py); use_msgpack() is also what a test calls through runpy.
MAIN = '''\
"""vzslave as one file (built by vzmaster.agent): python3 vzslave-VERSION.pyz [--root ROOT];
python3 vzslave-VERSION.pyz supervisor [--foreground] runs the vz supervisor."""

import os
import sys

VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_vendor")


def use_msgpack():
    """Import msgpack for vzslave: the node's own when it is 1.0 or newer (a compiled one
    is much faster), else the pure-Python copy in this zip's _vendor directory."""
    try:
        import msgpack
        if tuple(msgpack.version) >= (1, 0):
            return msgpack
    except Exception:  # absent, broken, or too old to have a version tuple
        pass
    # A failed or refused import can leave msgpack and its submodules behind.
    for name in [name for name in sys.modules if name.split(".")[0] == "msgpack"]:
        del sys.modules[name]
    sys.path.insert(0, VENDOR)
    import msgpack
    return msgpack


if __name__ == "__main__":
    use_msgpack()
    if sys.argv[1:2] == ["supervisor"]:
        # The vz supervisor, where PID 1 ignores /etc/inittab (vzmaster node add starts
        # it under systemd or upstart, in the foreground: no python-daemon needed).
        del sys.argv[1]
        from vzslave.supervisor import main
    else:
        from vzslave.server import main
    main()
'''


class AgentError(Error):
    """The agent could not be built: ``message`` says why and what to do."""


class AgentBuild(NamedTuple):
    """A built agent file."""

    path: str
    name: str  # vzslave-VERSION.pyz
    version: str
    sha256: str
    size: int


def agent_name(version: str = vzslave.__version__) -> str:
    """The agent's file name for a vzslave version."""
    return "vzslave-{}.pyz".format(version)


def package_files(directory: str, prefix: str) -> list[tuple[str, str]]:
    """(name in the zip, path) of every .py under ``directory``, no __pycache__."""
    found = []
    for parent, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        relative = os.path.relpath(parent, directory)
        for name in files:
            if name.endswith(".py"):
                arcname = name if relative == "." else os.path.join(relative, name)
                found.append((prefix + "/" + arcname.replace(os.sep, "/"),
                              os.path.join(parent, name)))
    return sorted(found)


def msgpack_files() -> list[tuple[str, str]]:
    """(name in the zip, path) of the installed msgpack's pure-Python modules and licence.

    Raises AgentError if msgpack is missing, older than 1.0, or has no fallback.py."""
    try:
        import msgpack
    except ImportError as exc:
        raise AgentError("msgpack is not installed on this machine; the agent bundles "
                         "its pure-Python modules (pip install msgpack)") from exc
    version = tuple(getattr(msgpack, "version", ()))
    if version < MIN_MSGPACK:
        raise AgentError("msgpack {} is installed; the agent needs 1.0 or newer".format(
            ".".join(map(str, version)) or "(no version)"))
    directory = os.path.dirname(os.path.abspath(msgpack.__file__ or ""))
    files = package_files(directory, VENDOR + "/msgpack")
    if not any(arcname.endswith("/fallback.py") for arcname, _ in files):
        raise AgentError("the msgpack in {} has no fallback.py, its pure-Python "
                         "implementation".format(directory))
    return sorted(files + msgpack_licence())


def msgpack_licence() -> list[tuple[str, str]]:
    """The licence files of the installed msgpack distribution, if its metadata has any."""
    try:
        dist = importlib.metadata.distribution("msgpack")
    except importlib.metadata.PackageNotFoundError:
        return []
    found = {file.name: str(dist.locate_file(file)) for file in dist.files or []
             if file.name in LICENCES}
    return [(VENDOR + "/msgpack/" + name, path) for name, path in sorted(found.items())]


def check_node_python(paths: Sequence[str]) -> None:
    """Raise AgentError unless vermin says ``paths`` run on the node's oldest Python."""
    if importlib.util.find_spec("vermin") is None:
        raise AgentError("vermin is needed to check that the bundled msgpack runs on "
                         "Python {}: pip install vermin".format(NODE_PYTHON))
    done = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips",
         "--no-config-file", "--violations", "-p=1", "-t={}-".format(NODE_PYTHON),
         *paths], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise AgentError("the installed msgpack's pure-Python code needs a newer Python "
                         "than {}, which nodes may have; install an older msgpack "
                         "(>= 1.0) on this machine. vermin said:\n{}".format(
                             NODE_PYTHON, done.stdout.strip()))


def agent_files() -> list[tuple[str, bytes]]:
    """(name in the zip, contents) of every entry of the agent, sorted by name."""
    parent = os.path.dirname(os.path.abspath(vzslave.__file__ or ""))
    entries = [("__main__.py", MAIN.encode())]
    for arcname, path in package_files(parent, "vzslave") + msgpack_files():
        with open(path, "rb") as source:
            entries.append((arcname, source.read()))
    return sorted(entries)


_built: dict[str, bytes] = {}  # digest of the inputs -> the zip
_checked: set[str] = set()  # digests of vendored sources vermin passed


def agent_bytes(compression: Compression = DEFAULT_COMPRESSION) -> bytes:
    """The agent zipapp, reproducibly: the same sources give the same bytes.

    Raises AgentError (see msgpack_files, check_node_python)."""
    if compression not in COMPRESSIONS:
        raise AgentError("unknown compression {!r}: stored or deflated".format(compression))
    entries = agent_files()
    key = digest(entries, compression)
    if key not in _built:
        vendored = [(arcname, data) for arcname, data in entries
                    if arcname.startswith(VENDOR + "/") and arcname.endswith(".py")]
        vendored_key = digest(vendored, "")
        if vendored_key not in _checked:
            with tempfile.TemporaryDirectory(prefix="vz-agent-") as scratch:
                paths = []
                for arcname, data in vendored:  # the very bytes that go in the zip
                    paths.append(os.path.join(scratch, *arcname.split("/")))
                    os.makedirs(os.path.dirname(paths[-1]), exist_ok=True)
                    with open(paths[-1], "wb") as copy:
                        copy.write(data)
                check_node_python(paths)
            _checked.add(vendored_key)
        _built[key] = zip_entries(entries, COMPRESSIONS[compression])
    return _built[key]


def digest(entries: Sequence[tuple[str, bytes]], salt: str) -> str:
    """One sha256 over names and contents (lengths included, so no two lists collide)."""
    hasher = hashlib.sha256(salt.encode() + b"\0")
    for arcname, data in entries:
        hasher.update(b"%d:%s%d:" % (len(arcname), arcname.encode(), len(data)))
        hasher.update(data)
    return hasher.hexdigest()


def zip_entries(entries: Sequence[tuple[str, bytes]], compress_type: int) -> bytes:
    """A zip of ``entries`` in that order, with fixed dates, modes and system."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, DATE_TIME)
            info.compress_type = compress_type
            info.create_system = 3  # Unix, so external_attr reads as a mode everywhere
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


def build_agent(directory: str,
                compression: Compression = DEFAULT_COMPRESSION) -> AgentBuild:
    """Write ``directory/vzslave-VERSION.pyz`` atomically (a temporary file renamed over).

    Raises AgentError, also when the file cannot be written."""
    data = agent_bytes(compression)
    name = agent_name()
    path = os.path.join(os.path.abspath(directory), name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, data)
    except OSError as exc:
        raise AgentError("cannot write {}: {}".format(path, exc)) from exc
    return AgentBuild(path, name, vzslave.__version__, hashlib.sha256(data).hexdigest(),
                      len(data))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m vzmaster.agent build [-o DIR] [--compression stored|deflated]``."""
    parser = argparse.ArgumentParser(prog="python -m vzmaster.agent",
                                     description="Build the vzslave agent zipapp.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write vzslave-VERSION.pyz")
    build.add_argument("-o", "--output", default=".", metavar="DIR",
                       help="the directory to write it in (default: .)")
    build.add_argument("--compression", choices=sorted(COMPRESSIONS),
                       default=DEFAULT_COMPRESSION)
    args = parser.parse_args(argv)
    try:
        built = build_agent(args.output, args.compression)
    except AgentError as exc:
        parser.exit(1, "{}: error: {}\n".format(parser.prog, exc.message))
    print(built.path)
    print("  size    {} bytes ({})".format(built.size, args.compression))
    print("  sha256  {}".format(built.sha256))


if __name__ == "__main__":
    main()
