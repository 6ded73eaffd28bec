"""Compile an OCI ``linux.seccomp`` object into a classic BPF seccomp filter (sans-I/O).

``compile_filter(section, machine)`` checks the section (runtime-spec 1.x) and returns
a ``Filter``: the program for this node's architecture, the seccomp(2) flags and
the syscall number that installs it; the runner installs it (vzslave/runner.py).
Refusals are ``BadConfigError`` naming the field, e.g. ``linux.seccomp.syscalls[3].action``.

The program::

    load seccomp_data.arch; one branch per AUDIT_ARCH_* of the arches below; else
    KILL_PROCESS. Each branch loads the syscall number and binary-searches it over
    intervals of equal outcome, down to a SECCOMP_RET_* value or the rules of one
    syscall (argument tests, in order, then the default action).

What is decided where the runtime-spec is silent (as runc 1.1 with libseccomp 2.5
does, unless said otherwise):

- Arches: the node's own plus those listed in ``architectures`` that its kernel can
  run (x86_64: x86, x32; aarch64: arm); any other arch a process presents is killed,
  or a deny-list would be bypassed by ``int 0x80`` (i386 numbers). On x86_64 the
  numbers 0x40000000-0x7fffffff are x32's (x32 bit set), handled by the x32 table if
  x32 is listed, else killed. Listed arches this kernel cannot run are ignored.
- Syscall names an arch does not have are skipped for that arch; a name no table
  knows becomes a warning (probably a typo).
- A rule whose action is the default action is skipped (runc does, libseccomp
  refuses it). A rule that tests the same argument twice becomes one rule per test,
  ORed (runc's fallback). Tests of one rule are ANDed.
- Several rules for one syscall are tried in the order given, the first whose tests
  hold decides (libseccomp merges them into a tree instead; for rules that do not
  overlap, the result is the same).
- Argument tests are unsigned 64-bit comparisons on 64-bit arches (x86_64, aarch64),
  high word then low word; on 32-bit arches (x86, x32, arm) only the low 32 bits of
  the argument and of the rule's values are compared (libseccomp truncates the same).
  SCMP_CMP_MASKED_EQ tests ``arg & value == valueTwo``.
- SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD; errnoRet defaults to EPERM for ERRNO and
  TRACE and is refused on other actions (the spec says to fail).
- ``flags`` absent (not empty): SECCOMP_FILTER_FLAG_SPEC_ALLOW where the kernel takes
  it, as runc, so the filter does not force the speculative-store-bypass mitigation on.
- No listener: SCMP_ACT_NOTIFY, ``listenerPath`` and the listener flags are refused.
- An empty section (no defaultAction, no syscalls) means no filter, as in runc.

Standard library only, Python 3.6+.
"""

import json
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

from vzslave import bpf
from vzslave.errors import BadConfigError

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
EPERM = 1

ACTIONS = {
    "SCMP_ACT_KILL": RET_KILL_THREAD, "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS, "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_ERRNO": RET_ERRNO, "SCMP_ACT_TRACE": RET_TRACE, "SCMP_ACT_ALLOW": RET_ALLOW,
    "SCMP_ACT_LOG": RET_LOG}
_DATA_LIMIT = {"SCMP_ACT_ERRNO": 4095, "SCMP_ACT_TRACE": 0xFFFF}  # actions with errnoRet

FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW = 1, 2, 4
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": FLAG_TSYNC, "SECCOMP_FILTER_FLAG_LOG": FLAG_LOG,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": FLAG_SPEC_ALLOW}

OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
       "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

X86_64, X86, X32 = "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"
AARCH64, ARM = "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"
# The names runc/libseccomp accept; only the first five can run on the machines below.
ARCHES = (X86_64, X86, X32, AARCH64, ARM) + tuple("SCMP_ARCH_" + name for name in (
    "MIPS", "MIPS64", "MIPS64N32", "MIPSEL", "MIPSEL64", "MIPSEL64N32", "PPC", "PPC64",
    "PPC64LE", "S390", "S390X", "PARISC", "PARISC64", "RISCV64", "LOONGARCH64", "M68K",
    "SH", "SHEB"))
AUDIT_ARCH = {X86_64: 0xC000003E, X32: 0xC000003E, X86: 0x40000003, AARCH64: 0xC00000B7,
              ARM: 0x40000028}
_ARGS_64 = (X86_64, AARCH64)  # arches whose syscall arguments are 64-bit words
X32_SYSCALL_BIT = 0x40000000
_ARM_MACHINES = ("arm", "armv6l", "armv7l", "armv8l")
# uname -m -> (the arch of a 64-bit and a 32-bit userland, the arches its kernel runs)
MACHINES = {"x86_64": ((X86_64, X86), (X86_64, X86, X32)),
            "aarch64": ((AARCH64, ARM), (AARCH64, ARM))}
MACHINES.update({name: ((X86, X86), (X86,)) for name in ("i386", "i486", "i586", "i686")})
MACHINES.update({name: ((ARM, ARM), (ARM,)) for name in _ARM_MACHINES})

_SECCOMP_DATA_ARGS = 16  # offsetof(struct seccomp_data, args)
_RUNC = "set runtime to runc or crun to run this bundle unchanged"


class Filter(NamedTuple):
    """A compiled filter: what the plan keeps and the runner installs."""

    program: bytes         # struct sock_filter[], native byte order
    flags: int             # SECCOMP_FILTER_FLAG_* that must be honoured
    optional_flags: int    # flags to drop if the kernel refuses them (runc's SPEC_ALLOW)
    syscall: int           # the number of seccomp(2) for the runner's own arch
    warnings: List[str]


class _Rule(NamedTuple):
    names: List[str]
    field: str
    tests: Tuple[Tuple[str, int, int, int], ...]  # (op, index, value, valueTwo), ANDed
    action: int


def _bad(field: str, message: str) -> BadConfigError:
    return BadConfigError(message, {"field": field})


_JSON_TYPES: Dict[type, str] = {
    bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
    dict: "an object"}


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "null")  # json.loads makes exactly these types


def _typed(obj: Dict[str, Any], key: str, cls: type, field: str, default: Any) -> Any:
    """``obj[key]`` checked to be a ``cls`` (a list or an object); ``default`` if absent."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, cls):
        raise _bad(field, "{} must be {}, not {}".format(field, _JSON_TYPES[cls], _kind(value)))
    return value


def _number(value: Any, field: str, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise _bad(field, "{} must be an integer from 0 to {}, not {}".format(
            field, high, "missing" if value is None else json.dumps(value)))
    return value


def arches_for(machine: str) -> List[str]:
    """The arches a filter for ``machine`` (uname -m) lists: its own and its compat ones."""
    return list(MACHINES[machine][1]) if machine in MACHINES else []


def compile_filter(section: Any, machine: str, pointer_bits: int = 64) -> Optional[Filter]:
    """Check ``linux.seccomp`` and compile it for ``machine``; None if it asks for nothing."""
    field = "linux.seccomp"
    if not isinstance(section, dict):
        raise _bad(field, "{} must be an object, not {}".format(field, _kind(section)))
    syscalls = _typed(section, "syscalls", list, field + ".syscalls", [])
    if not section.get("defaultAction") and not syscalls:
        return None
    for key in ("listenerPath", "listenerMetadata"):
        if section.get(key):
            raise _bad(field + "." + key, "{}.{} is set, but the chroot runner has no seccomp "
                       "agent to notify: remove it, or {}".format(field, key, _RUNC))
    if machine not in MACHINES:
        raise _bad(field, "{} is set, but the chroot runner compiles seccomp filters for "
                   "x86_64, i386, aarch64 and arm only, not {}: remove the field, or "
                   "{}".format(field, machine, _RUNC))
    if "defaultAction" not in section:
        raise _bad(field + ".defaultAction", "{}.defaultAction is missing: set it, e.g. "
                   "SCMP_ACT_ALLOW for a deny-list or SCMP_ACT_ERRNO for an "
                   "allow-list".format(field))
    default = _action(section, field, "defaultAction", "defaultErrnoRet")
    flags, optional = _flags(section, field)
    native = MACHINES[machine][0][0 if pointer_bits == 64 else 1]
    arches = _arches(section, field, machine, native)
    rules = _rules(syscalls, field, default)
    program = _generate(arches, rules, default)
    if len(program) > bpf.MAX_INSNS * 8:
        raise _bad(field + ".syscalls", "{}.syscalls compiles to {} BPF instructions for {}, "
                   "more than the kernel's limit of {}: list fewer syscalls, argument rules "
                   "or architectures".format(field, len(program) // 8, ", ".join(arches),
                                             bpf.MAX_INSNS))
    from vzslave.syscalls import TABLES
    return Filter(program, flags, optional, TABLES[native]["seccomp"],
                  _unknown_names(rules, TABLES))


def _action(obj: Dict[str, Any], field: str, key: str, errno_key: str) -> int:
    name = obj.get(key)
    if name == "SCMP_ACT_NOTIFY":
        raise _bad("{}.{}".format(field, key), "{}.{} is SCMP_ACT_NOTIFY, but the chroot "
                   "runner has no seccomp agent to notify: use another action, or {}".format(
                       field, key, _RUNC))
    if not isinstance(name, str) or name not in ACTIONS:
        raise _bad("{}.{}".format(field, key), "{}.{} must be one of {}, not {}".format(
            field, key, ", ".join(ACTIONS), json.dumps(name)))
    data = obj.get(errno_key)
    if data is None:
        return ACTIONS[name] | (EPERM if name in _DATA_LIMIT else 0)
    where = "{}.{}".format(field, errno_key)
    if name not in _DATA_LIMIT:
        raise _bad(where, "{} is set, but {} returns no errno: remove it, or use "
                   "SCMP_ACT_ERRNO".format(where, name))
    return ACTIONS[name] | _number(data, where, _DATA_LIMIT[name])


def _flags(section: Dict[str, Any], field: str) -> Tuple[int, int]:
    if section.get("flags") is None:
        return 0, FLAG_SPEC_ALLOW
    flags = 0
    for index, name in enumerate(_typed(section, "flags", list, field + ".flags", [])):
        if name not in FLAGS:
            where = "{}.flags[{}]".format(field, index)
            raise _bad(where, "{} is {}; the chroot runner sets only {}: remove it, or "
                       "{}".format(where, json.dumps(name), ", ".join(FLAGS), _RUNC))
        flags |= FLAGS[name]
    return flags, 0


def _arches(section: Dict[str, Any], field: str, machine: str, native: str) -> List[str]:
    """The arches to make tables for, native first, in the order listed."""
    runnable = MACHINES[machine][1]
    chosen = [native]
    for index, name in enumerate(_typed(section, "architectures", list,
                                        field + ".architectures", [])):
        if name not in ARCHES:
            where = "{}.architectures[{}]".format(field, index)
            raise _bad(where, "{} is {}, not a libseccomp architecture (SCMP_ARCH_X86_64, "
                       "SCMP_ARCH_AARCH64, ...): fix or remove it".format(
                           where, json.dumps(name)))
        if name in runnable and name not in chosen:
            chosen.append(name)
    return chosen


def _rules(syscalls: List[Any], field: str, default: int) -> List[_Rule]:
    rules: List[_Rule] = []
    for index, item in enumerate(syscalls):
        where = "{}.syscalls[{}]".format(field, index)
        if not isinstance(item, dict):
            raise _bad(where, "{} must be an object, not {}".format(where, _kind(item)))
        names = _typed(item, "names", list, where + ".names", [])
        if not names or not all(isinstance(name, str) and name for name in names):
            raise _bad(where + ".names", "{}.names must be a non-empty list of syscall "
                       "names".format(where))
        action = _action(item, where, "action", "errnoRet")
        tests = [_test(arg, "{}.args[{}]".format(where, number)) for number, arg in
                 enumerate(_typed(item, "args", list, where + ".args", []))]
        if action == default:
            continue  # the default decides anyway (runc skips these rules too)
        indexes = [test[1] for test in tests]
        if len(set(indexes)) < len(indexes):  # runc: one rule per test, ORed
            rules.extend(_Rule(names, where, (test,), action) for test in tests)
        else:
            rules.append(_Rule(names, where, tuple(tests), action))
    return rules


def _test(arg: Any, field: str) -> Tuple[str, int, int, int]:
    if not isinstance(arg, dict):
        raise _bad(field, "{} must be an object, not {}".format(field, _kind(arg)))
    op = arg.get("op")
    if op not in OPS:
        raise _bad(field + ".op", "{}.op must be one of {}, not {}".format(
            field, ", ".join(OPS), json.dumps(op)))
    return (op, _number(arg.get("index"), field + ".index", 5),
            _number(arg.get("value"), field + ".value", 2 ** 64 - 1),
            _number(arg.get("valueTwo", 0), field + ".valueTwo", 2 ** 64 - 1))


def _unknown_names(rules: List[_Rule], tables: Dict[str, Dict[str, int]]) -> List[str]:
    warnings: List[str] = []
    seen: Set[str] = set()
    for rule in rules:
        for name in rule.names:
            if name not in seen and not any(name in table for table in tables.values()):
                seen.add(name)
                warnings.append("{}.names: {} is not a syscall of any architecture vz knows; "
                                "it is skipped".format(rule.field, json.dumps(name)))
    return warnings


# -- code generation -------------------------------------------------------------------

Outcome = Tuple[Any, ...]  # ("ret", value) or ("rules", arch, ((tests, action), ...))
_NO_SYSCALLS = ""  # a region of numbers no arch has: the default action decides


def _outcomes(arch: str, rules: List[_Rule]) -> Dict[int, Outcome]:
    """Syscall number -> what decides it, for the numbers some rule names on ``arch``."""
    from vzslave.syscalls import TABLES
    table = TABLES[arch]
    listed: Dict[int, List[Tuple[Tuple[Tuple[str, int, int, int], ...], int]]] = {}
    for rule in rules:
        for name in rule.names:
            number = table.get(name)
            if number is None:
                continue  # not a syscall of this arch (runc skips it too)
            chain = listed.setdefault(number, [])
            if not (chain and not chain[-1][0]) and (rule.tests, rule.action) not in chain:
                chain.append((rule.tests, rule.action))  # nothing after a test-free rule
    return {number: ("ret", chain[0][1]) if not chain[0][0] else ("rules", arch, tuple(chain))
            for number, chain in listed.items()}


def _regions(arch_set: List[str], audit: int) -> List[Tuple[int, int, Optional[str]]]:
    """(first, end, arch or None to kill) covering the numbers of one AUDIT_ARCH."""
    if audit != AUDIT_ARCH[X86_64]:
        [arch] = [a for a in arch_set if AUDIT_ARCH[a] == audit]
        return [(0, 1 << 32, arch)]
    # x86_64 and x32 share AUDIT_ARCH_X86_64; x32 numbers carry the x32 bit. Numbers
    # from 0x80000000 are no syscall of either (ENOSYS): the default action decides.
    return [(0, X32_SYSCALL_BIT, X86_64 if X86_64 in arch_set else None),
            (X32_SYSCALL_BIT, 2 * X32_SYSCALL_BIT, X32 if X32 in arch_set else None),
            (2 * X32_SYSCALL_BIT, 1 << 32, _NO_SYSCALLS)]


def _intervals(regions: List[Tuple[int, int, Optional[str]]], rules: List[_Rule],
               default: int) -> List[Tuple[int, Outcome]]:
    """(first number, outcome) of maximal runs of equal outcome over all 2**32 numbers."""
    points: List[Tuple[int, Outcome]] = []
    for first, end, arch in regions:
        if arch is None:
            points.append((first, ("ret", RET_KILL_PROCESS)))
            continue
        points.append((first, ("ret", default)))
        outcomes = _outcomes(arch, rules) if arch != _NO_SYSCALLS else {}
        for number in sorted(n for n in outcomes if first <= n < end):
            points.append((number, outcomes[number]))
            if number + 1 < end:
                points.append((number + 1, ("ret", default)))
    merged: List[Tuple[int, Outcome]] = []
    for first, outcome in points:
        if merged and merged[-1][0] == first:
            merged.pop()  # a syscall where a region or the gap after another one starts
        if not merged or merged[-1][1] != outcome:
            merged.append((first, outcome))
    return merged


def _generate(arches: List[str], rules: List[_Rule], default: int) -> bytes:
    program = bpf.Program()
    audits: List[int] = []
    for arch in arches:
        if AUDIT_ARCH[arch] not in audits:
            audits.append(AUDIT_ARCH[arch])
    branches = [program.label() for _ in audits]
    program.load(4)  # seccomp_data.arch
    for audit, branch in zip(audits, branches):
        program.jump(bpf.JEQ_K, audit, branch, None)
    program.ret(RET_KILL_PROCESS)
    for audit, branch in zip(audits, branches):
        program.place(branch)
        _branch(program, _intervals(_regions(arches, audit), rules, default), default)
    return program.assemble()


def _branch(program: bpf.Program, intervals: List[Tuple[int, Outcome]], default: int) -> None:
    """One arch: search the number, then the returns and rule blocks the search reaches."""
    labels: Dict[Outcome, bpf.Label] = {}
    for _, outcome in intervals:
        if outcome not in labels:
            labels[outcome] = program.label()
    program.load(0)  # seccomp_data.nr
    if len(intervals) == 1:
        program.goto(labels[intervals[0][1]])
    else:
        _search(program, intervals, labels, 0, len(intervals), None)
    for outcome, label in labels.items():
        program.place(label)
        if outcome[0] == "ret":
            program.ret(outcome[1])
        else:
            _rule_block(program, outcome[1], outcome[2], default)


def _search(program: bpf.Program, intervals: List[Tuple[int, Outcome]],
            labels: Dict[Outcome, bpf.Label], low: int, high: int,
            here: Optional[bpf.Label]) -> None:
    """A binary search over intervals[low:high], its first test at ``here``."""
    middle = (low + high) // 2
    below = labels[intervals[low][1]] if middle - low == 1 else program.label()
    above = labels[intervals[middle][1]] if high - middle == 1 else program.label()
    if here is not None:
        program.place(here)
    program.jump(bpf.JGE_K, intervals[middle][0], above, below)
    if middle - low > 1:
        _search(program, intervals, labels, low, middle, below)
    if high - middle > 1:
        _search(program, intervals, labels, middle, high, above)


def _rule_block(program: bpf.Program, arch: str, chain: Any, default: int) -> None:
    """Each rule's tests in order, the first that holds returning its action."""
    for tests, action in chain:
        failed = program.label()
        for op, index, value, value_two in tests:
            _emit_test(program, arch in _ARGS_64, op, index, value, value_two, failed)
        program.ret(action)
        program.place(failed)
    program.ret(default)


def _emit_test(program: bpf.Program, wide: bool, op: str, index: int, value: int,
               value_two: int, failed: bpf.Label) -> None:
    """Code that falls through if argument ``index`` passes the test, else jumps to ``failed``.

    Unsigned 64-bit comparison by halves: the high words decide unless equal, then the
    low words do. Little-endian only: the low word of args[i] comes first.
    """
    low_at = _SECCOMP_DATA_ARGS + 8 * index
    high_at = low_at + 4
    high, low = value >> 32, value & 0xFFFFFFFF
    if op == "SCMP_CMP_MASKED_EQ":
        halves = [(high_at, high, value_two >> 32)] if wide else []
        for offset, mask, datum in halves + [(low_at, low, value_two & 0xFFFFFFFF)]:
            if mask == 0:
                if datum != 0:
                    program.goto(failed)  # (arg & 0) is never datum
                continue
            program.load(offset)
            if mask != 0xFFFFFFFF:
                program.and_k(mask)
            program.jump(bpf.JEQ_K, datum, None, failed)
        return
    # Each op as a comparison and whether the result is negated: NE = !EQ, LE = !GT...
    code, negate = {"SCMP_CMP_EQ": (bpf.JEQ_K, False), "SCMP_CMP_NE": (bpf.JEQ_K, True),
                    "SCMP_CMP_GT": (bpf.JGT_K, False), "SCMP_CMP_LE": (bpf.JGT_K, True),
                    "SCMP_CMP_GE": (bpf.JGE_K, False), "SCMP_CMP_LT": (bpf.JGE_K, True)}[op]
    passed = program.label()
    yes, no = (failed, passed) if negate else (passed, failed)
    if wide:
        program.load(high_at)
        if code == bpf.JEQ_K:
            program.jump(bpf.JEQ_K, high, None, no)
        else:  # strictly above: decided; below: decided; equal: the low words decide
            program.jump(bpf.JGT_K, high, yes, None)
            program.jump(bpf.JEQ_K, high, None, no)
    program.load(low_at)
    program.jump(code, low, yes, no)
    program.place(passed)
