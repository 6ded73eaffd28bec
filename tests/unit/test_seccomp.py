"""linux.seccomp -> BPF: each action, op and arch rule, run on a tiny BPF interpreter."""

import pytest
from hypothesis import given, settings, strategies as st

from tests import bpfvm
from vzslave import seccomp
from vzslave.errors import BadConfigError
from vzslave.syscalls import TABLES

AUDIT_X86_64, AUDIT_I386 = 0xC000003E, 0x40000003
AUDIT_AARCH64, AUDIT_ARM = 0xC00000B7, 0x40000028
ALLOW, KILL_PROCESS = seccomp.RET_ALLOW, seccomp.RET_KILL_PROCESS
EPERM = seccomp.RET_ERRNO | 1
X86_64 = TABLES["SCMP_ARCH_X86_64"]
I386 = TABLES["SCMP_ARCH_X86"]
X32 = TABLES["SCMP_ARCH_X32"]
U64 = 2 ** 64 - 1


def deny(*names, args=(), action="SCMP_ACT_ERRNO", **extra):
    return dict({"names": list(names), "action": action,
                 "args": [dict(zip(("index", "op", "value", "valueTwo"), arg)) for arg in args]},
                **extra)


def compiled(*syscalls, default="SCMP_ACT_ALLOW", machine="x86_64", **section):
    section.setdefault("architectures", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    made = seccomp.compile_filter(dict(section, defaultAction=default, syscalls=list(syscalls)),
                                  machine)
    assert made is not None
    return made


def verdict(made, nr, args=(), arch=AUDIT_X86_64):
    return bpfvm.run(made.program, arch, nr, args)[0]


def refusal(section, machine="x86_64"):
    with pytest.raises(BadConfigError) as raised:
        seccomp.compile_filter(section, machine)
    return raised.value


# -- actions -------------------------------------------------------------------------

@pytest.mark.parametrize("action, value", [
    ("SCMP_ACT_KILL", 0), ("SCMP_ACT_KILL_THREAD", 0), ("SCMP_ACT_KILL_PROCESS", 0x80000000),
    ("SCMP_ACT_TRAP", 0x00030000), ("SCMP_ACT_ERRNO", 0x00050001),
    ("SCMP_ACT_TRACE", 0x7FF00001), ("SCMP_ACT_LOG", 0x7FFC0000)])
def test_each_action_returns_its_seccomp_value(action, value):
    made = compiled(deny("mount", action=action))
    assert verdict(made, X86_64["mount"]) == value


def test_a_syscall_no_rule_names_gets_the_default_action():
    made = compiled(deny("mount"))
    assert verdict(made, X86_64["read"]) == ALLOW
    made = compiled(deny("read", action="SCMP_ACT_ALLOW"), default="SCMP_ACT_ERRNO")
    assert verdict(made, X86_64["read"]) == ALLOW and verdict(made, X86_64["mount"]) == EPERM


def test_errno_ret_sets_the_errno_of_a_rule_and_of_the_default():
    made = compiled(deny("mount", errnoRet=38), default="SCMP_ACT_ERRNO", defaultErrnoRet=13)
    assert verdict(made, X86_64["mount"]) == seccomp.RET_ERRNO | 38
    assert verdict(made, X86_64["read"]) == seccomp.RET_ERRNO | 13


def test_an_empty_section_compiles_to_no_filter():
    assert seccomp.compile_filter({}, "x86_64") is None
    assert seccomp.compile_filter({"syscalls": [], "architectures": []}, "x86_64") is None


# -- argument tests ------------------------------------------------------------------

HIGH = 0x1_0000_0000
# (op, value, valueTwo, argument, holds?) with the 64-bit edges: halves that disagree.
CASES = [
    ("SCMP_CMP_EQ", 5, 0, 5, True), ("SCMP_CMP_EQ", 5, 0, HIGH + 5, False),
    ("SCMP_CMP_EQ", HIGH + 5, 0, HIGH + 5, True), ("SCMP_CMP_EQ", U64, 0, U64, True),
    ("SCMP_CMP_NE", 5, 0, 5, False), ("SCMP_CMP_NE", 5, 0, HIGH + 5, True),
    ("SCMP_CMP_NE", HIGH + 5, 0, 5, True),
    ("SCMP_CMP_GT", 5, 0, 6, True), ("SCMP_CMP_GT", 5, 0, 5, False),
    ("SCMP_CMP_GT", HIGH + 9, 0, 2 * HIGH, True), ("SCMP_CMP_GT", 2 * HIGH, 0, HIGH + 9, False),
    ("SCMP_CMP_GT", 0xFFFFFFFF, 0, HIGH, True),
    ("SCMP_CMP_GE", 5, 0, 5, True), ("SCMP_CMP_GE", HIGH + 5, 0, HIGH + 4, False),
    ("SCMP_CMP_GE", HIGH, 0, 0xFFFFFFFF, False),
    ("SCMP_CMP_LT", 5, 0, 4, True), ("SCMP_CMP_LT", 5, 0, 5, False),
    ("SCMP_CMP_LT", 2 * HIGH, 0, HIGH + 9, True), ("SCMP_CMP_LT", HIGH + 9, 0, 2 * HIGH, False),
    ("SCMP_CMP_LE", 5, 0, 5, True), ("SCMP_CMP_LE", HIGH, 0, HIGH + 1, False),
    ("SCMP_CMP_LE", HIGH, 0, 0xFFFFFFFF, True), ("SCMP_CMP_LE", U64, 0, U64, True),
    ("SCMP_CMP_MASKED_EQ", 0x7E020000, 0, 0x11, True),
    ("SCMP_CMP_MASKED_EQ", 0x7E020000, 0, 0x10000011, False),
    ("SCMP_CMP_MASKED_EQ", 0x7E020000, 0, HIGH + 0x11, True),
    ("SCMP_CMP_MASKED_EQ", U64, HIGH + 1, HIGH + 1, True),
    ("SCMP_CMP_MASKED_EQ", U64, HIGH + 1, 1, False),
    ("SCMP_CMP_MASKED_EQ", 0xF, 0x10, 0x1F, False),  # a datum outside the mask never holds
]


@pytest.mark.parametrize("op, value, value_two, argument, holds", CASES)
def test_each_op_compares_64_bit_arguments_unsigned(op, value, value_two, argument, holds):
    made = compiled(deny("ioctl", args=[(1, op, value, value_two)]))
    got = verdict(made, X86_64["ioctl"], (0, argument))
    assert got == (EPERM if holds else ALLOW)


def python_op(op, value, value_two, argument):
    return {"SCMP_CMP_EQ": argument == value, "SCMP_CMP_NE": argument != value,
            "SCMP_CMP_GT": argument > value, "SCMP_CMP_GE": argument >= value,
            "SCMP_CMP_LT": argument < value, "SCMP_CMP_LE": argument <= value,
            "SCMP_CMP_MASKED_EQ": argument & value == value_two}[op]


WORDS = st.one_of(st.integers(0, U64), st.sampled_from([0, 1, 0xFFFFFFFF, HIGH, HIGH + 1, U64]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(seccomp.OPS), WORDS, WORDS, WORDS)
def test_every_op_agrees_with_unsigned_64_bit_arithmetic(op, value, value_two, argument):
    made = compiled(deny("ioctl", args=[(2, op, value, value_two)]))
    holds = python_op(op, value, value_two, argument)
    assert verdict(made, X86_64["ioctl"], (0, 0, argument)) == (EPERM if holds else ALLOW)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(seccomp.OPS), WORDS, WORDS, WORDS)
def test_32_bit_arches_compare_the_low_words_only(op, value, value_two, argument):
    made = compiled(deny("ioctl", args=[(0, op, value, value_two)]))
    low = 0xFFFFFFFF
    holds = python_op(op, value & low, value_two & low, argument & low)
    # The high word of an i386 argument is whatever the caller left there: ignored.
    got = verdict(made, I386["ioctl"], (argument,), arch=AUDIT_I386)
    assert got == (EPERM if holds else ALLOW)


def test_the_tests_of_one_rule_are_anded():
    made = compiled(deny("socket", args=[(0, "SCMP_CMP_EQ", 16, 0), (2, "SCMP_CMP_EQ", 9, 0)]))
    assert verdict(made, X86_64["socket"], (16, 3, 9)) == EPERM
    assert verdict(made, X86_64["socket"], (16, 3, 0)) == ALLOW
    assert verdict(made, X86_64["socket"], (2, 3, 9)) == ALLOW


def test_tests_of_one_argument_repeated_in_a_rule_are_ored_as_runc_does():
    made = compiled(deny("socket", args=[(0, "SCMP_CMP_EQ", 16, 0), (0, "SCMP_CMP_EQ", 17, 0)]))
    assert verdict(made, X86_64["socket"], (16,)) == EPERM
    assert verdict(made, X86_64["socket"], (17,)) == EPERM
    assert verdict(made, X86_64["socket"], (2,)) == ALLOW


def test_the_first_rule_of_a_syscall_whose_tests_hold_decides():
    made = compiled(deny("kill", args=[(1, "SCMP_CMP_EQ", 9, 0)], action="SCMP_ACT_TRAP"),
                    deny("kill", args=[(1, "SCMP_CMP_GE", 9, 0)], action="SCMP_ACT_LOG"),
                    deny("kill"))
    assert verdict(made, X86_64["kill"], (1, 9)) == seccomp.RET_TRAP
    assert verdict(made, X86_64["kill"], (1, 10)) == seccomp.RET_LOG
    assert verdict(made, X86_64["kill"], (1, 2)) == EPERM


def test_a_rule_with_the_default_action_is_skipped_as_runc_does():
    """When a deny-list allows clone without namespace flags and then denies clone, runc
    skips the allow rule (it is the default action): clone is always denied, here too."""
    made = compiled(deny("clone", args=[(0, "SCMP_CMP_MASKED_EQ", 0x7E020000, 0)],
                         action="SCMP_ACT_ALLOW"), deny("clone"))
    assert verdict(made, X86_64["clone"], (0x11,)) == EPERM


# -- architectures ---------------------------------------------------------------------

def test_a_listed_compat_arch_is_filtered_by_its_own_numbers():
    made = compiled(deny("mount"))
    assert verdict(made, I386["mount"], arch=AUDIT_I386) == EPERM  # 21, "int 0x80"
    assert verdict(made, X86_64["access"]) == ALLOW  # also 21, on x86_64
    assert verdict(made, I386["access"], arch=AUDIT_I386) == ALLOW


def test_an_arch_the_profile_does_not_list_is_killed():
    """When a deny-list lists only x86_64, `int 0x80` must not bypass it: killed."""
    made = compiled(deny("mount"), architectures=["SCMP_ARCH_X86_64"])
    assert verdict(made, I386["getpid"], arch=AUDIT_I386) == KILL_PROCESS
    assert verdict(made, X86_64["getpid"]) == ALLOW


def test_an_arch_this_kernel_cannot_run_is_killed_and_may_be_listed():
    made = compiled(deny("mount"), architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_PPC64LE"])
    assert verdict(made, 40, arch=AUDIT_AARCH64) == KILL_PROCESS
    assert verdict(made, 40, arch=0x80000015) == KILL_PROCESS  # AUDIT_ARCH_PPC64


def test_the_native_arch_is_filtered_even_when_not_listed():
    made = compiled(deny("mount"), architectures=[])
    assert verdict(made, X86_64["mount"]) == EPERM


def test_x32_numbers_are_killed_unless_x32_is_listed():
    """When x32 is not listed, a syscall number with the x32 bit must not slip through."""
    made = compiled(deny("mount"), architectures=["SCMP_ARCH_X86_64"])
    assert verdict(made, X32["mount"]) == KILL_PROCESS
    assert verdict(made, X32["getpid"]) == KILL_PROCESS


def test_listed_x32_is_filtered_by_its_own_numbers():
    made = compiled(deny("mount"))
    assert X32["mount"] == 0x40000000 + X86_64["mount"]
    assert verdict(made, X32["mount"]) == EPERM and verdict(made, X32["getpid"]) == ALLOW


def test_numbers_above_the_x32_range_get_the_default_action():
    made = compiled(deny("mount"), default="SCMP_ACT_ERRNO", architectures=[])
    assert verdict(made, 0xFFFFFFFF) == EPERM  # syscall(-1): ENOSYS-bound, not killed
    assert verdict(made, 0x80000000 + X86_64["mount"]) == EPERM


def test_aarch64_filters_arm_as_its_compat_arch():
    made = compiled(deny("mount"), machine="aarch64",
                    architectures=["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    aarch64, arm = TABLES["SCMP_ARCH_AARCH64"], TABLES["SCMP_ARCH_ARM"]
    assert verdict(made, aarch64["mount"], arch=AUDIT_AARCH64) == EPERM
    assert verdict(made, arm["mount"], arch=AUDIT_ARM) == EPERM
    assert verdict(made, aarch64["getpid"], arch=AUDIT_AARCH64) == ALLOW
    assert verdict(made, X86_64["getpid"]) == KILL_PROCESS
    assert made.syscall == aarch64["seccomp"]


def test_names_an_arch_lacks_are_skipped_for_that_arch_only():
    made = compiled(deny("socketcall", "mount"))
    assert verdict(made, I386["socketcall"], arch=AUDIT_I386) == EPERM
    assert verdict(made, X86_64["mount"]) == EPERM
    assert not made.warnings


def test_a_name_no_arch_knows_is_skipped_with_a_warning():
    made = compiled(deny("mount"), deny("mountt"))
    assert made.warnings == ['linux.seccomp.syscalls[1].names: "mountt" is not a syscall of '
                             'any architecture vz knows; it is skipped']


@pytest.mark.parametrize("machine, bits, name", [
    ("x86_64", 64, "SCMP_ARCH_X86_64"), ("x86_64", 32, "SCMP_ARCH_X86"),
    ("i686", 32, "SCMP_ARCH_X86"), ("aarch64", 64, "SCMP_ARCH_AARCH64"),
    ("armv7l", 32, "SCMP_ARCH_ARM")])
def test_the_filter_is_installed_by_the_runners_own_seccomp_syscall(machine, bits, name):
    made = seccomp.compile_filter({"defaultAction": "SCMP_ACT_ALLOW"}, machine, bits)
    assert made.syscall == TABLES[name]["seccomp"]


def test_flags_are_ored_and_absent_flags_ask_for_spec_allow_if_possible():
    made = compiled(flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"])
    assert (made.flags, made.optional_flags) == (3, 0)
    assert (compiled(flags=[]).flags, compiled(flags=[]).optional_flags) == (0, 0)
    assert (compiled().flags, compiled().optional_flags) == (0, seccomp.FLAG_SPEC_ALLOW)


# -- size ----------------------------------------------------------------------------

def test_a_long_allow_list_is_searched_not_scanned():
    names = sorted(name for name in X86_64 if name not in ("mount", "kexec_load"))
    made = compiled({"names": names, "action": "SCMP_ACT_ALLOW"}, default="SCMP_ACT_ERRNO")
    steps = [bpfvm.run(made.program, AUDIT_X86_64, nr)[1] for nr in X86_64.values()]
    assert max(steps) <= 20
    assert verdict(made, X86_64["mount"]) == EPERM and verdict(made, X86_64["read"]) == ALLOW
    assert verdict(made, I386["read"], arch=AUDIT_I386) == ALLOW


def test_syscalls_with_the_same_rules_share_one_block():
    made = compiled(*[deny(name, args=[(0, "SCMP_CMP_EQ", 1, 0)]) for name in X86_64],
                    architectures=[])
    assert len(bpfvm.instructions(made.program)) < 20


def test_far_jumps_go_through_trampolines_and_still_decide_right():
    rules = [deny(name, args=[(0, "SCMP_CMP_EQ", number, 0)])
             for number, name in enumerate(sorted(X86_64)[:150])]
    made = compiled(*rules)
    insns = bpfvm.instructions(made.program)
    assert len(insns) > 1000 and any(insn[0] == 0x05 for insn in insns)
    for number, name in enumerate(sorted(X86_64)[:150]):
        assert verdict(made, X86_64[name], (number,)) == EPERM
        assert verdict(made, X86_64[name], (number + 1,)) == ALLOW


def test_a_program_over_4096_instructions_is_refused():
    rules = [deny(name, args=[(0, "SCMP_CMP_GT", number, 0), (1, "SCMP_CMP_LT", 9, 0)])
             for number, name in enumerate(sorted(X86_64))]
    with pytest.raises(BadConfigError, match="more than the kernel's limit of 4096") as raised:
        compiled(*rules)
    assert raised.value.details["field"] == "linux.seccomp.syscalls"


# -- refusals ------------------------------------------------------------------------

def section(**fields):
    return dict({"defaultAction": "SCMP_ACT_ALLOW"}, **fields)


@pytest.mark.parametrize("config, field, words", [
    ([], "linux.seccomp", "must be an object"),
    ({"syscalls": [deny("mount")]}, "linux.seccomp.defaultAction", "is missing"),
    (section(defaultAction="SCMP_ACT_NOPE"), "linux.seccomp.defaultAction", "must be one of"),
    (section(defaultAction="SCMP_ACT_NOTIFY"), "linux.seccomp.defaultAction", "no seccomp agent"),
    (section(defaultErrnoRet=1), "linux.seccomp.defaultErrnoRet", "returns no errno"),
    (section(listenerPath="/run/agent.sock"), "linux.seccomp.listenerPath", "no seccomp agent"),
    (section(architectures=["SCMP_ARCH_Z80"]), "linux.seccomp.architectures[0]", "not a libsec"),
    (section(architectures="SCMP_ARCH_X86"), "linux.seccomp.architectures", "must be a list"),
    (section(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), "linux.seccomp.flags[0]",
     "sets only"),
    (section(syscalls=[deny("mount"), "mount"]), "linux.seccomp.syscalls[1]", "an object"),
    (section(syscalls=[{"action": "SCMP_ACT_ERRNO"}]), "linux.seccomp.syscalls[0].names",
     "non-empty list"),
    (section(syscalls=[deny("mount", action="SCMP_ACT_NOTIFY")]),
     "linux.seccomp.syscalls[0].action", "no seccomp agent"),
    (section(syscalls=[deny("mount", action="SCMP_ACT_ALLOW", errnoRet=1)]),
     "linux.seccomp.syscalls[0].errnoRet", "returns no errno"),
    (section(syscalls=[deny("mount", errnoRet=5000)]), "linux.seccomp.syscalls[0].errnoRet",
     "from 0 to 4095"),
    (section(syscalls=[deny("mount", args=[(6, "SCMP_CMP_EQ", 1, 0)])]),
     "linux.seccomp.syscalls[0].args[0].index", "from 0 to 5"),
    (section(syscalls=[deny("mount", args=[(0, "SCMP_CMP_EQ", -1, 0)])]),
     "linux.seccomp.syscalls[0].args[0].value", "from 0 to"),
    (section(syscalls=[deny("mount", args=[(0, "SCMP_CMP_IN", 1, 0)])]),
     "linux.seccomp.syscalls[0].args[0].op", "must be one of"),
])
def test_a_bad_section_is_refused_naming_the_field(config, field, words):
    error = refusal(config)
    assert error.details["field"] == field
    assert words in error.message


def test_an_unsupported_machine_is_refused_with_the_way_out():
    error = refusal(section(), machine="ppc64le")
    assert error.details["field"] == "linux.seccomp"
    assert "ppc64le" in error.message and "runc or crun" in error.message


def test_the_arches_of_a_build_machine_are_its_own_and_its_compat_ones():
    assert seccomp.arches_for("x86_64") == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                            "SCMP_ARCH_X32"]
    assert seccomp.arches_for("aarch64") == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert seccomp.arches_for("riscv64") == []
