"""The classic BPF assembler: labels, fall-through, trampolines, what it refuses."""

import pytest

from tests import bpfvm
from vzslave import bpf

NR = 0  # offsetof(struct seccomp_data, nr)


def program_with_gap(gap):
    """if nr == 7: return 1 (after ``gap`` dead returns); else return 2."""
    program = bpf.Program()
    seven = program.label()
    program.load(NR)
    program.jump(bpf.JEQ_K, 7, seven, None)
    program.ret(2)
    for _ in range(gap):
        program.ret(0)
    program.place(seven)
    program.ret(1)
    return program.assemble()


def test_a_jump_reaches_its_label_and_none_falls_through():
    code = program_with_gap(3)
    assert bpfvm.run(code, 0, 7)[0] == 1
    assert bpfvm.run(code, 0, 8)[0] == 2
    assert bpfvm.instructions(code)[1] == (bpf.JEQ_K, 4, 0, 7)


def test_a_jump_of_exactly_255_needs_no_trampoline():
    code = program_with_gap(254)
    assert bpfvm.instructions(code)[1][1] == 255
    assert bpfvm.run(code, 0, 7)[0] == 1


def test_a_jump_beyond_255_goes_through_a_trampoline():
    code = program_with_gap(300)
    insns = bpfvm.instructions(code)
    assert insns[1] == (bpf.JEQ_K, 0, 1, 7) and insns[2][0] == bpf.JA
    assert bpfvm.run(code, 0, 7)[0] == 1
    assert bpfvm.run(code, 0, 8)[0] == 2


def test_both_sides_of_a_jump_can_need_trampolines():
    program = bpf.Program()
    yes, no = program.label(), program.label()
    program.load(NR)
    program.jump(bpf.JGE_K, 10, yes, no)
    for _ in range(300):
        program.ret(0)
    program.place(no)
    program.ret(2)
    for _ in range(300):
        program.ret(0)
    program.place(yes)
    program.ret(1)
    code = program.assemble()
    assert [insn[0] for insn in bpfvm.instructions(code)[1:4]] == [bpf.JGE_K, bpf.JA, bpf.JA]
    assert bpfvm.run(code, 0, 11)[0] == 1
    assert bpfvm.run(code, 0, 9)[0] == 2


def test_instructions_are_native_sock_filters():
    program = bpf.Program()
    program.ret(0x7FFF0000)
    assert program.assemble() == bpf._INSN.pack(bpf.RET_K, 0, 0, 0x7FFF0000)


@pytest.mark.parametrize("build, words", [
    (lambda p: p.load(NR), "must end with a return"),
    (lambda p: (p.place(p.label()), p.ret(0), p.place(1), p.ret(0)), "placed twice"),
    (lambda p: (p.jump(bpf.JEQ_K, 1, 99, None), p.ret(0)), "never placed"),
    (lambda p: (p.place(p.label()), p.ret(0), p.goto(1), p.ret(0)), "backwards"),
    (lambda p: p.jump(bpf.RET_K, 1, None, None), "not a conditional jump"),
])
def test_misuse_is_refused(build, words):
    program = bpf.Program()
    with pytest.raises(ValueError, match=words):
        build(program)
        program.assemble()
