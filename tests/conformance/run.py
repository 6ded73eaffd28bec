#!/usr/bin/env python3
"""Run the OCI runtime-tools validation programs against runtimes; print a results table.

The programs (validation/*/*.go of opencontainers/runtime-tools) and cmd/runtimetest
are built by hand, out of tree (DEVELOPERS.md, "Conformance"): nothing here builds or
fetches them. Each program writes a config.json, drives the runtime named by $RUNTIME
through create/start/state/kill/delete (copying runtimetest into the rootfs when it
checks from inside) and prints TAP. Each runs in a fresh working directory holding
``runtimetest`` and ``rootfs-ARCH.tar.gz``, which is where the programs look for them.

    sudo python3 tests/conformance/run.py --validation-dir DIR --runtimetest PATH \\
        --runtime runc --runtime tests/conformance/runch [--only state,kill]

``--runtime`` is an executable path or a name on PATH (the programs exec it as one
path: tests/conformance/runch wraps ``python3 -m vzslave.runch``); ``NAME=PATH`` sets
the column's name. Results: ``ok N`` (N assertions passed; ``ok`` alone: a *_fail
program that printed nothing and exited 0, its pass), ``skip`` (the program skipped
everything), ``FAIL F/N``, ``ERROR`` (no assertions, or a non-zero exit), ``TIMEOUT``.
The note gives the first failing assertion per runtime. Standard library only.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

_RESULT = re.compile(r"^(not )?ok\b(?:\s+(\d+))?\s*(?:-\s*)?(.*)$")
_PLAN = re.compile(r"^1\.\.(\d+)")
_NOTE_WIDTH = 160
# Lines every program prints around a runtime's failure, which say nothing about it.
_BOILERPLATE = re.compile(r"^(failed to \w+ the container|exit status \d+|Clean: .*|# .*)$")


def parse_tap(text: str) -> Dict[str, Any]:
    """The assertions of a TAP stream: ok, skipped, description, YAML diagnostic text."""
    tests: List[Dict[str, Any]] = []
    orphans: List[str] = []  # diagnostics before any assertion (hooks reports so)
    plan: Optional[int] = None
    yaml: Optional[List[str]] = None
    for line in text.splitlines():
        if yaml is not None:
            if line.strip() == "...":
                if tests:
                    tests[-1]["diagnostic"] = "\n".join(yaml)
                else:
                    orphans.append("\n".join(yaml))
                yaml = None
            else:
                yaml.append(line)
            continue
        if line.strip() == "---":
            yaml = []
            continue
        match = _RESULT.match(line)
        if match:
            description, _, directive = match.group(3).partition("#")
            tests.append({"ok": not match.group(1), "description": description.strip(),
                          "skip": directive.strip().upper().startswith("SKIP"),
                          "directive": directive.strip(), "diagnostic": ""})
            continue
        match = _PLAN.match(line)
        if match:
            plan = int(match.group(1))
    return {"tests": tests, "plan": plan, "orphans": orphans}


def _diagnostic_summary(diagnostic: str) -> str:
    """The error (or stderr) of a YAML diagnostic, on one line."""
    try:
        data = json.loads(diagnostic)  # tap-go writes its YAML blocks as JSON
    except ValueError:
        return " ".join(diagnostic.split())
    if not isinstance(data, dict):
        return ""
    parts = [str(data[key]) for key in ("error", "stderr") if data.get(key)]
    if not parts and "expected" in data:
        parts.append("expected {}, got {}".format(json.dumps(data.get("expected")),
                                                  json.dumps(data.get("actual"))))
    return " ".join(" ".join(parts).split())


def _said(stderr: str) -> List[str]:
    """The informative lines of a program's stderr (the runtime's own messages)."""
    return [line.strip() for line in stderr.splitlines()
            if line.strip() and not _BOILERPLATE.match(line.strip())]


def judge(returncode: Optional[int], stdout: str, stderr: str) -> Dict[str, Any]:
    """One program's result under one runtime: a cell for the table and a note."""
    if returncode is None:
        return {"cell": "TIMEOUT", "passed": False, "note": "no result before the timeout"}
    tap = parse_tap(stdout)
    tests = tap["tests"]
    failed = [test for test in tests if not test["ok"]]
    if failed:
        first = failed[0]
        note = first["description"]
        detail = _diagnostic_summary(first["diagnostic"])
        if not detail or detail.startswith("exit status") and " " not in detail[12:]:
            detail = " ".join([detail] + _said(stderr)[:1]).strip()
        return {"cell": "FAIL {}/{}".format(len(failed), len(tests)), "passed": False,
                "note": note + (": " + detail if detail else ""),
                "failed": [test["description"] for test in failed]}
    if not tests and returncode == 0 and not tap["orphans"] and tap["plan"] is None:
        # The *_fail programs print nothing when the runtime refused the config, as it
        # must; they exit 1 when it did not.
        return {"cell": "ok", "passed": True, "note": ""}
    if not tests or returncode != 0 or (tap["plan"] is not None and tap["plan"] != len(tests)):
        said = [_diagnostic_summary(text) for text in tap["orphans"]] + _said(stderr)[:1]
        return {"cell": "ERROR", "passed": False, "note": "exit {}, {} of {} planned "
                "assertions{}".format(returncode, len(tests), tap["plan"],
                                      ": " + said[0] if said else "")}
    if all(test["skip"] for test in tests):
        return {"cell": "skip", "passed": True, "note": tests[0]["directive"]}
    return {"cell": "ok {}".format(len(tests)), "passed": True, "note": ""}


def drop_fields(config: Dict[str, Any], fields: List[str]) -> None:
    """Remove each dotted field (``linux.seccomp``) from ``config`` where it is set."""
    for field in fields:
        *parents, last = field.split(".")
        node: Any = config
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)


def exec_dropping(fields: List[str], runtime: str, argv: List[str]) -> None:
    """The --drop wrapper: at create or run, drop ``fields`` from the bundle's config.json,
    then exec the runtime with ``argv`` unchanged."""
    command = next((arg for arg in argv if arg in ("create", "run")), None)
    if command is not None:
        rest = argv[argv.index(command) + 1:]
        bundle = "."
        for index, arg in enumerate(rest):
            if arg in ("--bundle", "-b") and index + 1 < len(rest):
                bundle = rest[index + 1]
            elif arg.startswith("--bundle="):
                bundle = arg.split("=", 1)[1]
        path = os.path.join(bundle, "config.json")
        with open(path) as source:
            config = json.load(source)
        drop_fields(config, fields)
        with open(path + ".tmp", "w") as out:
            json.dump(config, out)
        os.replace(path + ".tmp", path)
    os.execv(runtime, [runtime] + argv)


def dropping_wrapper(directory: str, label: str, runtime: str, fields: List[str]) -> str:
    """Write an executable that runs ``runtime`` through exec_dropping; its path."""
    path = os.path.join(directory, label)
    with open(path, "w") as out:
        out.write("#!{} -I\nimport sys\nsys.path.insert(0, {!r})\nimport run\n"
                  "run.exec_dropping({!r}, {!r}, sys.argv[1:])\n".format(
                      sys.executable, os.path.dirname(os.path.abspath(__file__)), fields,
                      runtime))
    os.chmod(path, 0o755)
    return path


def run_program(program: str, runtime: str, runtimetest: str, rootfs: str,
                timeout: float) -> Tuple[Optional[int], str, str, float]:
    """Run one validation program with RUNTIME=runtime in a fresh working directory."""
    work = tempfile.mkdtemp(prefix="oci-conformance-")
    try:
        shutil.copy(runtimetest, os.path.join(work, "runtimetest"))
        os.symlink(rootfs, os.path.join(work, os.path.basename(rootfs)))
        env = dict(os.environ, RUNTIME=runtime)
        began = time.monotonic()
        # Its own session: on a timeout the program and what it started die together.
        proc = subprocess.Popen([program], cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
            code: Optional[int] = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            code = None
        return (code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                time.monotonic() - began)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def find_programs(directory: str, only: List[str]) -> List[Tuple[str, str]]:
    """(name, path) of every NAME.t in ``directory`` or its subdirectories, sorted."""
    found = {}
    for path in glob.glob(os.path.join(directory, "*.t")) + glob.glob(
            os.path.join(directory, "*", "*.t")):
        if os.access(path, os.X_OK):
            found[os.path.basename(path)[:-2]] = os.path.abspath(path)
    return [(name, found[name]) for name in sorted(found) if not only or name in only]


def parse_runtime(text: str) -> Tuple[str, str]:
    """(column name, absolute path) from ``PATH``, ``NAME`` on PATH or ``NAME=PATH``."""
    name, _, path = text.rpartition("=") if "=" in text else ("", "", text)
    resolved = shutil.which(path)
    if resolved is None:
        sys.exit("run.py: runtime {!r} is not an executable path or a name on PATH".format(
            path))
    resolved = os.path.abspath(resolved)
    return name or os.path.basename(resolved), resolved


def table(rows: List[Dict[str, Any]], names: List[str]) -> str:
    """The results as a Markdown table: program, one column per runtime, note."""
    lines = ["| program | {} | note |".format(" | ".join(names)),
             "|---|{}---|".format("---|" * len(names))]
    for row in rows:
        notes = ["{}: {}".format(name, row[name]["note"]) for name in names
                 if not row[name]["passed"] and row[name]["note"]]
        note = "; ".join(notes).replace("|", "\\|")
        if len(note) > _NOTE_WIDTH:
            note = note[:_NOTE_WIDTH - 3] + "..."
        lines.append("| {} | {} | {} |".format(
            row["program"], " | ".join(row[name]["cell"] for name in names), note))
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, run every program against every runtime, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--validation-dir", required=True,
                        help="the built validation programs (NAME.t, or NAME/NAME.t)")
    parser.add_argument("--runtimetest", required=True, help="the built cmd/runtimetest")
    parser.add_argument("--rootfs-tarball", default=None,
                        help="runtime-tools' rootfs-ARCH.tar.gz (default: beside runtimetest "
                        "or in the validation directory)")
    parser.add_argument("--runtime", action="append", required=True,
                        help="PATH, NAME on PATH, or NAME=PATH; repeat for each runtime")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per program and runtime (default 120)")
    parser.add_argument("--drop", action="append", default=[], metavar="FIELD",
                        help="remove this dotted config field (e.g. linux.seccomp) before "
                        "every runtime's create: to see past a field one runtime refuses")
    parser.add_argument("--only", default="", help="comma-separated program names")
    parser.add_argument("--json", default=None, help="also write the full results here")
    parser.add_argument("--output-dir", default=None,
                        help="keep each run's TAP and stderr here (NAME.RUNTIME.tap/.err)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py: the validation programs create containers: run as root")
    runtimes = [parse_runtime(text) for text in args.runtime]
    wrappers = tempfile.mkdtemp(prefix="oci-conformance-wrappers-")
    try:
        if args.drop:
            runtimes = [(label, dropping_wrapper(wrappers, label, path, args.drop))
                        for label, path in runtimes]
            print("Every config.json without: {}\n".format(", ".join(args.drop)))
        run_all(args, runtimes)
    finally:
        shutil.rmtree(wrappers, ignore_errors=True)


def run_all(args: argparse.Namespace, runtimes: List[Tuple[str, str]]) -> None:
    """Run every program against every runtime; print the table (and write --json)."""
    rootfs = args.rootfs_tarball
    if rootfs is None:
        candidates = glob.glob(os.path.join(os.path.dirname(args.runtimetest),
                                            "rootfs-*.tar.gz")) + glob.glob(
            os.path.join(args.validation_dir, "rootfs-*.tar.gz"))
        if not candidates:
            sys.exit("run.py: no rootfs-ARCH.tar.gz beside runtimetest or in the validation "
                     "directory: give --rootfs-tarball")
        rootfs = candidates[0]
    rootfs = os.path.abspath(rootfs)
    programs = find_programs(args.validation_dir, [n for n in args.only.split(",") if n])
    if not programs:
        sys.exit("run.py: no validation programs (NAME.t) in {}".format(args.validation_dir))
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    rows = []
    for name, path in programs:
        row: Dict[str, Any] = {"program": name}
        for label, runtime in runtimes:
            code, out, err, took = run_program(path, runtime, args.runtimetest, rootfs,
                                               args.timeout)
            row[label] = dict(judge(code, out, err), seconds=round(took, 1))
            sys.stderr.write("{:40} {:8} {} ({:.1f} s)\n".format(
                name, label, row[label]["cell"], took))
            if args.output_dir:
                base = os.path.join(args.output_dir, "{}.{}".format(name, label))
                with open(base + ".tap", "w") as out_file:
                    out_file.write(out)
                with open(base + ".err", "w") as err_file:
                    err_file.write(err)
        rows.append(row)
    names = [label for label, _ in runtimes]
    print(table(rows, names))
    for label in names:
        passed = sum(1 for row in rows if row[label]["passed"])
        print("\n{}: {} of {} programs pass or skip".format(label, passed, len(rows)), end="")
    print()
    if args.json:
        with open(args.json, "w") as out_file:
            json.dump(rows, out_file, indent=1)


if __name__ == "__main__":
    main()
