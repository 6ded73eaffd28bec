"""Typing and lint, run as tests so CI enforces them."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from vzslave.errors import ErrorCode
from vzslave.handlers import OPS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tool(module):
    try:
        __import__(module)
    except ImportError:
        pytest.skip("{} is not installed (pip install -e '.[test]')".format(module))


def test_both_packages_pass_mypy_strict():
    tool("mypy")
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    assert done.returncode == 0, done.stdout


def test_the_code_passes_ruff():
    ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
    if not os.path.exists(ruff):
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    done = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert done.returncode == 0, done.stdout


def protocol_doc():
    with open(os.path.join(ROOT, "docs", "protocol.md")) as doc:
        return doc.read()


def test_the_protocol_reference_lists_exactly_the_error_codes():
    documented = {(int(code), name) for code, name in
                  re.findall(r"^\| *(\d+) \| `([A-Z_]+)` \|", protocol_doc(), re.M)}
    assert documented == {(int(code), code.name) for code in ErrorCode}


def test_the_protocol_reference_documents_every_op():
    headings = set(re.findall(r"^### `([a-z.]+)`", protocol_doc(), re.M))
    assert headings | {"hello"} == set(OPS)
