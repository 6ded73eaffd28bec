"""Typing and lint, run as tests so CI enforces them."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from vzslave import oci
from vzslave.config import Layout, Limits
from vzslave.errors import ErrorCode
from vzslave.handlers import OPS, Array, Fixed, Map, Node, Num
from vzslave.protocol import Cancel, Data, Decoder, Request, encode
from vzslave.server import serve

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


def documented_ranges():
    """(op, argument, is_float, min, max) for each row of the numeric arguments table."""
    rows = re.findall(r"^\| `([a-z.]+)` \| `([a-z_]+(?:\[\d*\])?(?:\.[a-z_]+)?)` \| (\w+) \| "
                      r"([\d.]+) \| "
                      r"([\d.]+) \|", protocol_doc(), re.M)
    return {(op, arg, kind == "float", float(low), float(high))
            for op, arg, kind, low, high in rows}


def schema_ranges():
    """The same, from the Num specs in the OPS schemas."""
    found = set()

    def walk(op_name, name, spec):
        if isinstance(spec, Num):
            found.add((op_name, name, spec.kind is float, float(spec.low), float(spec.high)))
        elif isinstance(spec, Array):
            walk(op_name, name + "[]", spec.item)
        elif isinstance(spec, Fixed):
            for index, item in enumerate(spec.items):
                walk(op_name, "{}[{}]".format(name, index), item)
        elif isinstance(spec, Map):
            for key, item in spec.fields.items():
                walk(op_name, "{}.{}".format(name, key), item)

    for op_name, op in OPS.items():
        for name, spec in op.required.items():
            walk(op_name, name, spec)
        for name, (spec, _) in op.optional.items():
            walk(op_name, name, spec)
    return found


def test_the_protocol_reference_lists_exactly_the_numeric_ranges_of_the_schemas():
    assert documented_ranges() == schema_ranges()


def test_the_protocol_reference_says_limits_are_inclusive():
    assert "All limits are inclusive" in protocol_doc()
    assert "limits included" in protocol_doc()


def hex_examples():
    """(declared length, bytes) of each "(hex, N bytes):" block of the reference."""
    for match in re.finditer(r"\(hex,\s+(\d+) bytes\):\n\n((?: {4}.*\n)+)", protocol_doc()):
        data = bytearray()
        for line in match.group(2).splitlines():
            tokens = re.split(r"\s{3,}", line.strip())[0].split()
            if all(re.fullmatch(r"(?:[0-9a-f]{2})+", token) for token in tokens):
                data += bytes.fromhex("".join(tokens))
        yield int(match.group(1)), bytes(data)


def test_the_protocol_reference_hex_examples_are_what_the_code_sends(tmp_path):
    layout = Layout(str(tmp_path / "vz"))
    layout.make_dirs()
    requests = [Request(1, "hello", {"versions": [1]}), Request(3, "image.list", {}),
                Request(4, "image.remove", {"name": "x.tar"})]
    pending = [encode(request) for request in requests]
    output = bytearray()
    serve(lambda: pending.pop(0) if pending else b"", output.extend,
          Node(layout, Limits()))
    decoder = Decoder()
    decoder.feed(bytes(output))
    node_sent = [decoder.next_frame() for _ in requests][1:]  # hello's reply varies
    expected = {encode(requests[0]), encode(Data(2, b"abc")), encode(Cancel(2))}
    expected |= {encode(frame) for frame in node_sent}
    examples = list(hex_examples())
    for length, data in examples:
        assert len(data) == length
    assert {data for _, data in examples} == expected


def test_the_protocol_reference_has_the_config_table_of_oci_py():
    doc = oci.__doc__
    start = doc.index("    field                         honoured how")
    table = doc[start:doc.index("\n\n", start)]
    assert "\n" + table + "\n" in protocol_doc()


def test_the_protocol_reference_lists_the_details_of_every_error_code():
    rows = re.findall(r"^\| *\d+ \| `([A-Z_]+)` \| [^|]+ \| ([^|]+) \|$", protocol_doc(), re.M)
    assert {name for name, _ in rows} == {code.name for code in ErrorCode}
