"""A classic BPF assembler with labels: what a seccomp filter is written in (sans-I/O).

Classic BPF jumps only forward, and a conditional jump's offsets (``jt``, ``jf``) are
8-bit. ``Program`` takes jumps to labels and, at ``assemble`` time, lays the code
out: a target more than 255 instructions away gets a trampoline, an unconditional
``ja`` (32-bit offset) right after the jump, and the layout is redone until every
offset fits. The result is the bytes of ``struct sock_filter[]`` in native byte
order (u16 code, u8 jt, u8 jf, u32 k), ready for seccomp(2).

Standard library only, Python 3.6+.
"""

import struct
from typing import Dict, List, Optional

MAX_INSNS = 4096  # BPF_MAXINSNS: the kernel refuses longer programs

# The opcodes seccomp filters use (linux/filter.h, linux/bpf_common.h).
LD_W_ABS = 0x20   # A = 32-bit word at offset k of struct seccomp_data
AND_K = 0x54      # A &= k
JA = 0x05         # pc += k
JEQ_K = 0x15      # pc += (A == k) ? jt : jf
JGT_K = 0x25      # unsigned A > k
JGE_K = 0x35      # unsigned A >= k
JSET_K = 0x45     # A & k != 0
RET_K = 0x06      # return k

_INSN = struct.Struct("=HBBI")
_CONDITIONAL = (JEQ_K, JGT_K, JGE_K, JSET_K)

Label = int  # a label is a number made by Program.label(); None in a jump means "next"


class _Insn(object):
    __slots__ = ("code", "k", "jt", "jf", "far_t", "far_f")

    def __init__(self, code: int, k: int, jt: Optional[Label] = None,
                 jf: Optional[Label] = None) -> None:
        self.code = code
        self.k = k & 0xFFFFFFFF
        self.jt = jt
        self.jf = jf
        self.far_t = False  # needs a trampoline for jt
        self.far_f = False

    def size(self) -> int:
        return 1 + self.far_t + self.far_f


class Program(object):
    """Instructions with symbolic forward jumps; ``assemble()`` makes the bytes."""

    def __init__(self) -> None:
        self._insns: List[_Insn] = []
        self._labels: Dict[Label, int] = {}  # label -> index of the instruction it names
        self._made = 0

    def __len__(self) -> int:
        return len(self._insns)

    def label(self) -> Label:
        """A new label, to be placed once with ``place``."""
        self._made += 1
        return self._made

    def place(self, label: Label) -> None:
        """Make ``label`` name the next instruction added."""
        if label in self._labels:
            raise ValueError("label {} placed twice".format(label))
        self._labels[label] = len(self._insns)

    def load(self, offset: int) -> None:
        """A = the 32-bit word at ``offset`` of struct seccomp_data."""
        self._insns.append(_Insn(LD_W_ABS, offset))

    def and_k(self, mask: int) -> None:
        """A &= mask."""
        self._insns.append(_Insn(AND_K, mask))

    def jump(self, code: int, k: int, jt: Optional[Label], jf: Optional[Label]) -> None:
        """A conditional jump (JEQ_K, JGT_K, JGE_K, JSET_K); None goes on to the next."""
        if code not in _CONDITIONAL:
            raise ValueError("not a conditional jump: {:#x}".format(code))
        self._insns.append(_Insn(code, k, jt, jf))

    def goto(self, label: Label) -> None:
        """An unconditional jump."""
        self._insns.append(_Insn(JA, 0, label))

    def ret(self, value: int) -> None:
        """Return ``value`` (a SECCOMP_RET_* action and its data)."""
        self._insns.append(_Insn(RET_K, value))

    def assemble(self) -> bytes:
        """The program as struct sock_filter[]: jumps resolved, trampolines added."""
        if not self._insns or self._insns[-1].code != RET_K:
            raise ValueError("a BPF program must end with a return")
        for label, index in self._labels.items():
            if index >= len(self._insns):
                raise ValueError("label {} names no instruction".format(label))
        while True:
            where = self._layout()
            if not self._widen(where):
                break
        return b"".join(self._encode(where))

    def _layout(self) -> List[int]:
        """The address of each instruction, then the end."""
        where = []
        address = 0
        for insn in self._insns:
            where.append(address)
            address += insn.size()
        where.append(address)
        return where

    def _target(self, label: Optional[Label], index: int, where: List[int]) -> int:
        if label is None:
            return where[index + 1]
        if label not in self._labels:
            raise ValueError("label {} was never placed".format(label))
        target = where[self._labels[label]]
        if target <= where[index]:
            raise ValueError("classic BPF cannot jump backwards (label {})".format(label))
        return target

    def _widen(self, where: List[int]) -> bool:
        """Give a trampoline to each short jump that does not reach; True if any did."""
        changed = False
        for index, insn in enumerate(self._insns):
            if insn.code not in _CONDITIONAL:
                continue
            base = where[index] + 1
            if not insn.far_t and self._target(insn.jt, index, where) - base > 255:
                insn.far_t = changed = True
            if not insn.far_f and self._target(insn.jf, index, where) - base > 255:
                insn.far_f = changed = True
        return changed

    def _encode(self, where: List[int]) -> List[bytes]:
        out = []
        for index, insn in enumerate(self._insns):
            base = where[index] + 1
            if insn.code == JA:
                out.append(_INSN.pack(JA, 0, 0, self._target(insn.jt, index, where) - base))
            elif insn.code in _CONDITIONAL:
                targets = [self._target(insn.jt, index, where),
                           self._target(insn.jf, index, where)]
                offsets = []
                trampolines: List[int] = []
                for far, target in zip((insn.far_t, insn.far_f), targets):
                    if far:  # jump to the trampoline, which jumps to the target
                        offsets.append(len(trampolines))
                        trampolines.append(target)
                    else:
                        offsets.append(target - base)
                out.append(_INSN.pack(insn.code, offsets[0], offsets[1], insn.k))
                for number, target in enumerate(trampolines):
                    out.append(_INSN.pack(JA, 0, 0, target - (base + number + 1)))
            else:
                out.append(_INSN.pack(insn.code, 0, 0, insn.k))
        return out
