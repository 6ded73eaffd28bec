"""A tiny classic-BPF interpreter for seccomp programs, checking what the kernel checks.

``run(program, arch, nr, args)`` evaluates struct sock_filter[] bytes on a
struct seccomp_data (little-endian, as on x86 and arm) and returns (the SECCOMP_RET_*
value, the number of instructions executed). Only the instructions vz emits are
known; anything else, a jump out of the program or a misaligned load fails.
"""

import struct

MAX_INSNS = 4096
_INSN = struct.Struct("=HBBI")
_DATA = struct.Struct("<iIQ6Q")  # nr, arch, instruction_pointer, args[6]


def instructions(program):
    """The (code, jt, jf, k) tuples of ``program``."""
    assert len(program) % 8 == 0
    return [_INSN.unpack_from(program, offset) for offset in range(0, len(program), 8)]


def check(program):
    """What the kernel's checker refuses: length, last instruction, jumps out of range."""
    insns = instructions(program)
    assert 0 < len(insns) <= MAX_INSNS, "program length {}".format(len(insns))
    assert insns[-1][0] == 0x06, "the last instruction must return"
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code == 0x05:
            assert pc + 1 + k < len(insns), "ja out of range at {}".format(pc)
        elif code in (0x15, 0x25, 0x35, 0x45):
            assert pc + 1 + max(jt, jf) < len(insns), "jump out of range at {}".format(pc)
        elif code == 0x20:
            assert k % 4 == 0 and k < _DATA.size, "bad load offset {} at {}".format(k, pc)
        else:
            assert code in (0x54, 0x06), "unexpected opcode {:#x} at {}".format(code, pc)
    return insns


_checked = {}


def run(program, arch, nr, args=()):
    """(return value, instructions executed) for syscall ``nr`` of ``arch`` with ``args``."""
    insns = _checked.get(program)
    if insns is None:
        insns = _checked[program] = check(program)
    data = _DATA.pack(nr if nr < 2 ** 31 else nr - 2 ** 32, arch, 0,
                      *(list(args) + [0] * (6 - len(args))))
    pc = steps = a = 0
    while True:
        code, jt, jf, k = insns[pc]
        steps += 1
        if code == 0x20:
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:
            a &= k
        elif code == 0x05:
            pc += k
        elif code == 0x06:
            return k, steps
        else:
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: a & k != 0}[code]
            pc += jt if taken else jf
        pc += 1
