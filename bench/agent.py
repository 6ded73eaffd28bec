#!/usr/bin/env python3
"""The agent zipapp against the installed package: size, and start-up to a hello reply.

Each case spawns a vzslave on pipes, sends a hello frame and times until the reply
has arrived (then closes stdin and reaps it): what a session costs before its first
call. The installed package is a byte-compiled copy of vzslave (compileall first: this
machine sets PYTHONDONTWRITEBYTECODE=1, a node after pip has its .pyc); the same copy
without .pyc shows what compiling the sources costs; the zip cases are the stored and
deflated builds (the node's compiled msgpack found, as on a node that has one), the
stored one under -S (bundled pure-Python msgpack), the stored one with .pyc of this
Python added inside (zipimport reads NAME.pyc beside NAME.py in a zip), and the stored
one extracted into a directory and byte-compiled there (``python3 -m zipfile -e``,
``python3 -m compileall``): two things an install on the node could do. Then the
import that ROOT/bin/vzrun does at every container spawn (``python3 -IS``,
vzslave.runner), from each.

Round robin, medians, ratios to the installed package. Run by hand, never in tests:
    .venv/bin/python bench/agent.py [--runs 30] [--python PYTHON]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vzslave  # noqa: E402
from vzmaster.agent import Compression, agent_bytes  # noqa: E402
from vzslave.protocol import Decoder, Reply, Request, encode  # noqa: E402

HELLO = encode(Request(1, "hello", {"versions": [1]}))


def hello_time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from spawning ``argv`` to its reply to hello."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=cwd, bufsize=0)
    assert proc.stdin and proc.stdout
    proc.stdin.write(HELLO)
    decoder = Decoder()
    frame = None
    while frame is None:
        data = os.read(proc.stdout.fileno(), 65536)
        decoder.feed(data)
        frame = decoder.next_frame()
        if not data and frame is None:
            raise SystemExit("{} ended without a reply".format(argv))
    elapsed = time.perf_counter() - started
    proc.stdin.close()
    proc.wait()
    proc.stdout.close()
    if not isinstance(frame, Reply):
        raise SystemExit("{} answered hello with {!r}".format(argv, frame))
    return elapsed


def run_time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from spawning ``argv`` to its exit (status 0)."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True)
    return time.perf_counter() - started


# Run by the node's interpreter: the zip with NAME.pyc beside every NAME.py, compiled by
# that Python and stamped with the .py entry's zip date, as zipimport checks them
# (a mktime of the DOS date, and the source size).
ADD_BYTECODE = """
import importlib.util, marshal, struct, sys, time, zipfile
with zipfile.ZipFile(sys.argv[1]) as source, zipfile.ZipFile(sys.argv[2], "w") as target:
    for info in source.infolist():
        data = source.read(info)
        target.writestr(info, data)
        if info.filename.endswith(".py") and info.filename != "__main__.py":
            code = compile(data, info.filename, "exec", dont_inherit=True)
            stamp = struct.pack("<II", int(time.mktime(info.date_time + (-1, -1, -1))),
                                len(data))
            flags = struct.pack("<I", 0) if sys.version_info >= (3, 7) else b""
            pyc = zipfile.ZipInfo(info.filename + "c", info.date_time)
            target.writestr(pyc, importlib.util.MAGIC_NUMBER + flags + stamp
                            + marshal.dumps(code))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--python", default=sys.executable,
                        help="the node's interpreter (default: this one)")
    args = parser.parse_args()
    py = args.python
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # The children run in the scratch directory: ``-m`` puts the working directory
    # first on sys.path, and a source tree there would be imported instead.
    with tempfile.TemporaryDirectory(prefix="vzbench-agent-") as work:
        package = os.path.dirname(os.path.abspath(vzslave.__file__ or ""))
        compiled, source = os.path.join(work, "compiled"), os.path.join(work, "source")
        for tree in (compiled, source):
            shutil.copytree(package, os.path.join(tree, "vzslave"),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        subprocess.run([py, "-m", "compileall", "-q", compiled], check=True)
        pyz: dict[str, str] = {}
        compressions: tuple[Compression, ...] = ("stored", "deflated")
        for name in compressions:
            pyz[name] = os.path.join(work, name + ".pyz")
            with open(pyz[name], "wb") as file:
                file.write(agent_bytes(name))
        pyz["stored+pyc"] = os.path.join(work, "stored-pyc.pyz")
        subprocess.run([py, "-c", ADD_BYTECODE, pyz["stored"], pyz["stored+pyc"]], check=True)
        extracted = os.path.join(work, "extracted")  # what an install could do on the node
        subprocess.run([py, "-m", "zipfile", "-e", pyz["stored"], extracted], check=True)
        subprocess.run([py, "-m", "compileall", "-q", extracted], check=True)
        sizes = {name: os.path.getsize(path) for name, path in pyz.items()}

        def root(label: str) -> list[str]:
            return ["--root", os.path.join(work, "root " + label)]

        hello_cases = [
            ("installed (.pyc)", [py, "-m", "vzslave"], dict(env, PYTHONPATH=compiled)),
            ("installed, no .pyc", [py, "-m", "vzslave"],
             dict(env, PYTHONPATH=source, PYTHONDONTWRITEBYTECODE="1")),
            ("zip stored", [py, pyz["stored"]], env),
            ("zip deflated", [py, pyz["deflated"]], env),
            ("zip stored -S (bundled msgpack)", [py, "-S", pyz["stored"]], env),
            ("zip stored + .pyc inside", [py, pyz["stored+pyc"]], env),
            ("zip extracted + compileall", [py, extracted], env),
        ]
        runner = "import sys; sys.path.insert(0, {!r}); from vzslave.runner import main"
        run_cases = [
            ("python3 -IS -c pass", [py, "-IS", "-c", "pass"]),
            ("installed (.pyc)", [py, "-IS", "-c", runner.format(compiled)]),
            ("installed, no .pyc", [py, "-B", "-IS", "-c", runner.format(source)]),
            ("zip stored", [py, "-IS", "-c", runner.format(pyz["stored"])]),
            ("zip deflated", [py, "-IS", "-c", runner.format(pyz["deflated"])]),
            ("zip stored + .pyc inside", [py, "-IS", "-c", runner.format(pyz["stored+pyc"])]),
            ("zip extracted + compileall", [py, "-IS", "-c", runner.format(extracted)]),
        ]
        hello: dict[str, list[float]] = {label: [] for label, _, _ in hello_cases}
        spawn: dict[str, list[float]] = {label: [] for label, _ in run_cases}
        for index in range(args.runs + 1):  # the first round warms up, uncounted
            for label, argv, case_env in hello_cases:
                elapsed = hello_time(argv + root(label), case_env, work)
                if index:
                    hello[label].append(elapsed)
            for label, argv in run_cases:
                elapsed = run_time(argv, env, work)
                if index:
                    spawn[label].append(elapsed)
    version = subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    print("agent size: stored {} bytes, deflated {} bytes ({:.0%}); with .pyc of Python "
          "{} inside: {} bytes".format(sizes["stored"], sizes["deflated"],
                                       sizes["deflated"] / sizes["stored"], version,
                                       sizes["stored+pyc"]))
    for title, samples in (("spawn to hello reply", hello),
                           ("vzrun's import (python3 -IS, vzslave.runner)", spawn)):
        medians = {label: statistics.median(s) * 1000 for label, s in samples.items()}
        base = medians["installed (.pyc)"]
        print("\n{} (Python {}, median of {} runs)".format(title, version, args.runs))
        for label, median in medians.items():
            print("  {:34} {:7.1f} ms  {:5.2f}x".format(label, median, median / base))


if __name__ == "__main__":
    main()
