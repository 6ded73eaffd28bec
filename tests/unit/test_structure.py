"""The shape of the code, as DEVELOPERS.md draws it: layers, no cycles, no private
names across modules, a unit test file per module. The analysis is tools/structure.py's
(ast only: nothing of vz is imported)."""

import ast
import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "tests", "unit")

# Modules without a unit test file of their own, and why.
EXEMPT = {
    "vzslave": "the package holds only __version__",
    "vzslave.__main__": "two lines that call server.main",
    "vzmaster": "re-exports; test_layering checks __all__",
    "vzmaster.build": "the deprecated name of vzmaster.imaging; test_layering imports it",
    "vzmaster.testing.box": "namespaces, a real init and sshd need root: tests/system/"
                            "test_box.py",
    "vzmaster.transports.base": "Transport and SSHOptions: tests/unit/test_transports.py",
    "vzmaster.transports.local": "a vzslave child process: tests/integration/"
                                 "test_local_node.py",
    "vzmaster.transports.openssh": "the system's ssh: tests/system/test_node_over_sshd.py",
    "vzmaster.imaging.builder": "builds real images: tests/integration/test_build_real.py",
    "vzmaster.imaging.command": "the build and inspect subcommands: tests/integration/"
                                "test_build_real.py",
    "vzmaster.imaging.errors": "one exception class: tests/unit/test_vzmaster_errors.py",
    "vzmaster.imaging.packages": "asks dpkg: tests/integration/test_build_real.py",
}


def load_structure():
    spec = importlib.util.spec_from_file_location(
        "structure", os.path.join(ROOT, "tools", "structure.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


structure = load_structure()
MODULES = structure.modules(ROOT)


def drawn_layers():
    """Module -> its layer's rank, from DEVELOPERS.md's ```layers block."""
    with open(os.path.join(ROOT, "DEVELOPERS.md"), encoding="utf-8") as doc:
        block = re.search(r"```layers\n(.*?)```", doc.read(), re.S).group(1)
    ranks, rank, package = {}, -1, ""
    for line in block.splitlines():
        words = line.split()
        if not words:
            continue
        if not line.startswith(" "):  # "PACKAGE LAYER modules...": a new layer
            package, words, rank = words[0], words[2:], rank + 1
        for name in words:
            module = package if name == "__init__" else package + "." + name
            assert module not in ranks, "{} is drawn in two layers".format(module)
            ranks[module] = rank
    return ranks


def edges():
    """(importer, imported) for every import between vz's modules."""
    found = []
    for module, path in sorted(MODULES.items()):
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        found += [(module, target) for target, _ in structure.imports(
            tree, module, set(MODULES)) if target != module]
    return found


def test_every_module_is_drawn_in_one_layer():
    ranks = drawn_layers()
    assert sorted(set(MODULES) - set(ranks)) == []
    assert sorted(set(ranks) - set(MODULES)) == []  # nothing drawn that is gone


def test_no_module_imports_from_a_layer_above_its_own():
    ranks = drawn_layers()
    upward = ["{} imports {}".format(a, b) for a, b in edges() if ranks[b] > ranks[a]]
    assert upward == []


def test_there_is_no_import_cycle():
    graph = {}
    for importer, imported in edges():
        graph.setdefault(importer, set()).add(imported)
    assert structure.cycles(graph) == []


def test_no_module_uses_a_private_name_of_another():
    used = []
    for module, path in sorted(MODULES.items()):
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        used += ["{} imports {}.{}".format(module, target, name)
                 for target, name in structure.imports(tree, module, set(MODULES))
                 if name.startswith("_") and not name.startswith("__") and target != module]
        aliases = structure.module_aliases(tree, set(MODULES))
        used += ["{} uses {}.{}".format(module, aliases[node.value.id], node.attr)
                 for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id in aliases and node.attr.startswith("_")
                 and not node.attr.startswith("__") and aliases[node.value.id] != module]
    assert used == []


def unit_test_files(module):
    """The unit test files that count for ``module``."""
    package, _, rest = module.partition(".")
    if not rest:  # a top package: only its own file (test_vzmaster_errors.py is errors')
        return [name for name in os.listdir(UNIT) if name == "test_{}.py".format(package)]
    stems = ["test_" + rest.replace(".", "_")]
    if package == "vzmaster":
        stems.insert(0, "test_vzmaster_" + rest.replace(".", "_"))
    return [name for name in os.listdir(UNIT) for stem in stems
            if name == stem + ".py" or (name.startswith(stem + "_") and name.endswith(".py"))]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_unit_test_file_or_a_reason(module):
    assert unit_test_files(module) or module in EXEMPT, (
        "{} has no tests/unit/test_<module>.py: write one, or list it in EXEMPT with "
        "the reason".format(module))


def test_every_exemption_still_names_a_module_without_tests():
    assert [m for m in EXEMPT if m not in MODULES or unit_test_files(m)] == []
