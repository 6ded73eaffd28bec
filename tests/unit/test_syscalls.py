"""The generated syscall tables, checked against this machine's kernel headers."""

import os
import re

import pytest

from vzslave.syscalls import TABLES

HEADERS = "/usr/include/x86_64-linux-gnu/asm"


def header_numbers(name):
    path = os.path.join(HEADERS, name)
    if not os.path.exists(path):
        pytest.skip("{} is missing (linux-libc-dev)".format(path))
    with open(path) as source:
        return {match.group(1): int(match.group(2)) for match in re.finditer(
            r"^#define __NR_(\w+) (\d+)$", source.read(), re.M)}


@pytest.mark.parametrize("arch, header", [("SCMP_ARCH_X86_64", "unistd_64.h"),
                                          ("SCMP_ARCH_X86", "unistd_32.h")])
def test_the_table_agrees_with_the_hosts_header(arch, header):
    table, found = TABLES[arch], header_numbers(header)
    assert {name: found[name] for name in table if name in found} == {
        name: table[name] for name in table if name in found}
    # Same kernel series or not, no syscall drops out: the older side is a subset.
    older, newer = (table, found) if max(table.values()) <= max(found.values()) else (
        found, table)
    assert set(older) <= set(newer)


def test_x32_numbers_carry_the_x32_bit():
    assert all(number & 0x40000000 for number in TABLES["SCMP_ARCH_X32"].values())


def test_every_arch_knows_the_syscall_that_installs_filters():
    assert {arch: table["seccomp"] for arch, table in TABLES.items()} == {
        "SCMP_ARCH_X86_64": 317, "SCMP_ARCH_X86": 354, "SCMP_ARCH_X32": 0x40000000 + 317,
        "SCMP_ARCH_AARCH64": 277, "SCMP_ARCH_ARM": 383}
