"""seccomp for real, as root: `vzmaster build`'s default profile around a static probe.

The probe (C, compiled at test time) makes each call with arguments that fail
harmlessly when the call is allowed (a missing mount point, an invalid flag or
command: ENOENT, EINVAL) and prints the errno; inside a container with the default
profile the denied calls must say EPERM (clone3: ENOSYS) instead. The container keeps
CAP_SYS_ADMIN and CAP_BPF here, so that EPERM comes from the filter, not from a
missing capability. It runs through runch (the filter installed last, with
no_new_privileges) and through the runner as init starts it (without
no_new_privileges: installed before the capability steps).
"""

import json
import marshal
import os
import platform
import shutil
import subprocess
import sys

import pytest

from tests.conftest import requires_root
from vzmaster.imaging.ociconfig import Options, User, make_config
from vzslave import oci
from vzslave.fs import mounts_under

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    requires_root,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the probe's int 0x80 is x86"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the probe"),
]

PROBE = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long result) {
    printf("%s=%d\n", name, result == -1 ? errno : 0);
}

/* A call in a child: a killed child must not end the probe. Prints its errno or signal. */
static void in_child(const char *name, long number, int x86) {
    pid_t pid = fork();
    if (pid == 0) {
        long r;
        if (!x86)
            _exit(syscall(number) == -1 ? errno : 0);
        /* i386's mount(2) by int 0x80: number 21, pointers below 4 GiB; -errno in eax */
        __asm__ volatile ("int $0x80" : "=a"(r) : "a"(number), "b"("none"),
                          "c"("/nonexistent/vz"), "d"("tmpfs"), "S"(0), "D"(0) : "memory");
        _exit(r < 0 ? -r : 0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        printf("%s=signal%d\n", name, WTERMSIG(status));
    else
        printf("%s=%d\n", name, WEXITSTATUS(status));
}

int main(void) {
    report("mount", syscall(SYS_mount, "none", "/nonexistent/vz", "tmpfs", 0, 0));
    report("unshare", syscall(SYS_unshare, 1));             /* not a namespace flag */
    report("keyctl", syscall(SYS_keyctl, 0, -100, 0));      /* no such special keyring */
    report("bpf", syscall(SYS_bpf, -1, 0, 0));              /* no such command */
    report("clone3", syscall(435, 0, 0));                   /* size 0 */
    report("getpid", syscall(SYS_getpid) > 0 ? 0 : -1);  /* allowed */
    fflush(stdout);
    in_child("int80_mount", 21, 1);
    in_child("x32_getpid", 0x40000000 + 39, 0);
    fflush(stdout);
    return 0;
}
"""
ALLOWED = {"mount": "2", "unshare": "22", "keyctl": "22", "bpf": "22", "clone3": "22",
           "getpid": "0", "int80_mount": "2"}


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    base = tmp_path_factory.mktemp("probe")
    source = base / "probe.c"
    source.write_text(PROBE)
    binary = str(base / "probe")
    subprocess.run(["gcc", "-static", "-O1", "-o", binary, str(source)], check=True,
                   timeout=120)
    return binary


def results(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def bundle_for(base, probe, seccomp="default", no_new_privileges=True):
    """A bundle running the probe with the build's config (the default profile)."""
    bundle = os.path.join(str(base), "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    for directory in ("", "etc", "tmp"):
        os.makedirs(os.path.join(rootfs, directory), exist_ok=True)
    shutil.copy(probe, os.path.join(rootfs, "probe"))
    config = make_config(Options(args=["/probe"], seccomp=seccomp), User(0, 0))
    for key in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][key] += ["CAP_SYS_ADMIN", "CAP_BPF"]
    config["process"]["noNewPrivileges"] = no_new_privileges
    with open(os.path.join(bundle, "config.json"), "w") as out:
        json.dump(config, out)
    return bundle, config


def runch_run(base, bundle):
    done = subprocess.run(
        [sys.executable, "-m", "vzslave.runch", "--root", os.path.join(str(base), "runch"),
         "run", "--bundle", bundle, "probe"], cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert mounts_under(bundle) == []
    return results(done.stdout)


def test_the_probe_outside_any_container_is_allowed_every_call(probe):
    done = subprocess.run([probe], stdout=subprocess.PIPE, universal_newlines=True,
                          check=True, timeout=30)
    got = results(done.stdout)
    assert {name: got[name] for name in ALLOWED} == ALLOWED
    assert got["x32_getpid"] in ("0", "38")  # ENOSYS where the kernel has no x32


def test_the_default_profile_denies_in_a_runch_container(tmp_path, probe):
    bundle, _ = bundle_for(tmp_path, probe)
    got = runch_run(tmp_path, bundle)
    assert got == {"mount": "1", "unshare": "1", "keyctl": "1", "bpf": "1", "clone3": "38",
                   "getpid": "0", "int80_mount": "1", "x32_getpid": got["x32_getpid"]}
    assert got["x32_getpid"] in ("0", "38")  # x32 is listed: allowed by the filter


def test_an_arch_the_profile_leaves_out_is_killed(tmp_path, probe):
    """When the profile lists only x86_64, i386 and x32 calls are killed (SIGSYS)."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                   "architectures": ["SCMP_ARCH_X86_64"],
                                   "syscalls": [{"names": ["mount"],
                                                 "action": "SCMP_ACT_ERRNO"}]}))
    bundle, _ = bundle_for(tmp_path, probe, seccomp=str(profile))
    got = runch_run(tmp_path, bundle)
    assert got["mount"] == "1" and got["unshare"] == "22"
    assert got["int80_mount"] == "signal31" and got["x32_getpid"] == "signal31"


def test_without_no_new_privileges_the_runner_filters_its_app_too(tmp_path, probe):
    """When no_new_privileges is off, the filter goes in before the capability steps; the
    runner's own calls after it (setgroups, setuid, capset, execve) must still pass."""
    bundle, config = bundle_for(tmp_path, probe, no_new_privileges=False)
    root = os.path.join(str(tmp_path), "vz")
    state = os.path.join(root, "containers", "probe")
    log = os.path.join(root, "logs", "probe.log")
    os.makedirs(state)
    os.makedirs(os.path.dirname(log))
    plan = oci.build_plan(config, bundle, "probe")
    plan.update(runtime="builtin", runtime_path=None, state_dir=state,
                log={"path": log, "max_bytes": 1 << 20, "keep": 2, "syslog": False},
                backoff={"initial": 1.0, "max": 60.0, "stable": 30.0})
    with open(os.path.join(state, "plan.marshal"), "wb") as out:
        marshal.dump(plan, out)
    code = ("import sys; sys.path.insert(0, {!r}); from vzslave.runner import main; "
            "main(sys.argv[1:], {!r})".format(ROOT, root))
    try:
        done = subprocess.run([sys.executable, "-IS", "-X", "importtime", "-c", code, "probe"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60, universal_newlines=True)
    finally:
        from vzslave import mounts
        mounts.release(plan)
    with open(log) as source:
        text = source.read()
    assert done.returncode == 0, done.stdout + text
    got = results(text)
    assert got.get("mount") == "1" and got.get("int80_mount") == "1", text
    assert got.get("getpid") == "0" and got.get("clone3") == "38"
    # The plan holds the compiled program: the spawn needs neither compiler nor tables.
    imports = done.stdout + text
    assert "vzslave.runner" in imports
    assert "| vzslave.seccomp" not in imports and "| vzslave.syscalls" not in imports
