"""The syscall seams: lazy, errno-carrying, and doing what they say (in child processes)."""

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import requires_root
from vzslave import linux

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def in_child(code):
    """Run ``code`` in a fresh Python (namespaces and capabilities stay out of pytest)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=30)
    assert done.returncode == 0, done.stdout
    return done.stdout


def status_field(name):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split()[1]
    raise KeyError(name)


def test_importing_the_module_imports_no_ctypes():
    out = in_child("""
        import sys
        import vzslave.linux
        print(sorted(m for m in sys.modules if "ctypes" in m))
    """)
    assert out.strip() == "[]"


def test_the_first_call_imports_only_the_ctypes_extension():
    out = in_child("""
        import sys
        from vzslave import linux
        linux.prctl(linux.PR_GET_NO_NEW_PRIVS)
        print(sorted(m for m in sys.modules if "ctypes" in m))
    """)
    assert out.strip() == "['_ctypes']"


def test_a_failing_call_raises_oserror_with_errno_and_target(tmp_path):
    fd = os.open(str(tmp_path), os.O_RDONLY)
    try:
        with pytest.raises(OSError) as raised:
            linux.setns(fd, 0)
    finally:
        os.close(fd)
    assert raised.value.errno == errno.EINVAL
    assert raised.value.strerror == os.strerror(errno.EINVAL)
    assert raised.value.filename == "/proc/self/fd/{}".format(fd)


def test_unshare_with_an_unknown_flag_says_einval():
    with pytest.raises(OSError) as raised:
        linux.unshare(1)  # not a namespace flag
    assert raised.value.errno == errno.EINVAL


def test_prctl_returns_the_kernels_answer():
    assert linux.prctl(linux.PR_GET_NO_NEW_PRIVS) == int(status_field("NoNewPrivs"))


def test_capget_agrees_with_proc_status():
    effective, permitted, inheritable = linux.capget()
    assert effective == int(status_field("CapEff"), 16)
    assert permitted == int(status_field("CapPrm"), 16)
    assert inheritable == int(status_field("CapInh"), 16)


def test_cap_last_cap_is_the_kernels():
    with open("/proc/sys/kernel/cap_last_cap") as source:
        assert linux.cap_last_cap() == int(source.read())


@requires_root
def test_capset_sets_the_three_sets():
    out = in_child("""
        from vzslave import linux
        linux.capset(1 << 0, 1 << 0 | 1 << 40, 1 << 40)
        print(linux.capget())
    """)
    assert out.strip() == str((1, 1 | 1 << 40, 1 << 40))


@requires_root
def test_capset_beyond_the_permitted_set_says_eperm():
    out = in_child("""
        from vzslave import linux
        linux.capset(0, 1, 0)
        try:
            linux.capset(2, 3, 0)
        except PermissionError as exc:
            print(exc.errno, exc.filename)
    """)
    assert out.strip() == "{} capset".format(errno.EPERM)


@requires_root
def test_no_new_privileges_shows_in_proc_status():
    out = in_child("""
        from vzslave import linux
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        print(open("/proc/self/status").read())
    """)
    assert "NoNewPrivs:\t1" in out


@requires_root
def test_the_bounding_set_loses_a_dropped_capability():
    out = in_child("""
        from vzslave import linux
        linux.prctl(linux.PR_CAPBSET_DROP, 21)  # CAP_SYS_ADMIN
        print(linux.prctl(linux.PR_CAPBSET_READ, 21), linux.prctl(linux.PR_CAPBSET_READ, 0))
    """)
    assert out.split() == ["0", "1"]


@requires_root
def test_hostname_and_domainname_change_in_a_new_uts_namespace():
    out = in_child("""
        import os
        from vzslave import linux
        linux.unshare(linux.CLONE_NEWUTS)
        linux.sethostname("vz-test-host")
        linux.setdomainname("vz.example")
        print(os.uname().nodename, open("/proc/sys/kernel/domainname").read())
    """)
    assert out.split() == ["vz-test-host", "vz.example"]
    assert os.uname().nodename != "vz-test-host"


@requires_root
def test_loopback_comes_up_in_a_new_network_namespace():
    out = in_child("""
        import fcntl, socket, struct
        from vzslave import linux
        linux.unshare(linux.CLONE_NEWNET)
        def flags():
            with socket.socket() as s:
                req = fcntl.ioctl(s, 0x8913, struct.pack("16sh22x", b"lo", 0))
            return struct.unpack("16sh22x", req)[1]
        before = flags() & 1
        linux.loopback_up()
        linux.loopback_up()  # already up: nothing to do
        print(before, flags() & 1)
    """)
    assert out.split() == ["0", "1"]


@requires_root
def test_mount_and_umount2_in_a_new_mount_namespace(tmp_path):
    out = in_child("""
        from vzslave import linux
        target = {target!r}
        def mounted():
            return any(l.split()[4] == target for l in open("/proc/self/mountinfo"))
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID, "size=1m,mode=700")
        print(mounted())
        linux.umount2(target, linux.MNT_DETACH)
        print(mounted())
        try:
            linux.umount2(target)
        except OSError as exc:
            print(exc.errno, exc.filename == target)
    """.format(target=str(tmp_path)))
    assert out.split() == ["True", "False", str(errno.EINVAL), "True"]


SECCOMP_CHILD = """
    import errno, os
    from vzslave import linux, seccomp
    made = seccomp.compile_filter({{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123}}]}},
        os.uname().machine)
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)  # seccomp without CAP_SYS_ADMIN needs it
    linux.seccomp_filter(made.program, {syscall}, {flags}, {optional})
    try:
        os.mkdir({path!r})
    except OSError as exc:
        print(exc.errno)
    print(open("/proc/self/status").read())
"""


def seccomp_child(path, syscall="made.syscall", flags=0, optional=0):
    return in_child(SECCOMP_CHILD.format(path=str(path), syscall=syscall, flags=flags,
                                         optional=optional))


def test_a_seccomp_filter_installed_holds_for_the_process(tmp_path):
    out = seccomp_child(tmp_path / "made")
    assert out.split()[0] == "123"
    assert "Seccomp:\t2" in out
    assert not (tmp_path / "made").exists()


def test_without_seccomp2_the_filter_goes_in_by_prctl(tmp_path):
    """When seccomp(2) is missing (ENOSYS, kernels before 3.17), prctl installs the filter."""
    out = seccomp_child(tmp_path / "made", syscall=999999)  # no such syscall: ENOSYS
    assert out.split()[0] == "123"


def test_optional_flags_the_kernel_refuses_are_dropped(tmp_path):
    out = seccomp_child(tmp_path / "made", optional=1 << 30)  # no such flag: EINVAL
    assert out.split()[0] == "123"


def test_required_flags_the_kernel_refuses_raise_einval(tmp_path):
    with pytest.raises(AssertionError, match="Errno {}".format(errno.EINVAL)):
        seccomp_child(tmp_path / "made", flags=1 << 30)
