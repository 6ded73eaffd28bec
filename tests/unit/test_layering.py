"""The node/master split of DEVELOPERS.md, checked rather than hoped for: vzslave needs
only the standard library and msgpack, and the public names are the listed ones."""

import ast
import os
import pkgutil
import shutil
import subprocess
import sys

import pytest

import vzmaster
import vzslave

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLAVE_MODULES = sorted("vzslave." + m.name for m in pkgutil.iter_modules(vzslave.__path__))


def imported_modules(package: str):
    """Top-level names of every module the package's sources import."""
    found = set()
    directory = os.path.join(ROOT, package)
    for name in os.listdir(directory):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(directory, name)) as source:
            tree = ast.parse(source.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_vzslave_imports_only_the_standard_library_and_msgpack():
    # compression: the 3.14 standard library's; zstandard: used only if installed;
    # daemon (python-daemon): only by the fallback supervisor, imported when it starts.
    allowed = set(sys.stdlib_module_names) | {"msgpack", "vzslave", "compression", "zstandard",
                                              "daemon"}
    assert imported_modules("vzslave") - allowed == set()


def test_vzslave_loads_with_paramiko_and_vzmaster_unimportable():
    code = ("import sys; sys.modules['paramiko'] = None; sys.modules['vzmaster'] = None\n"
            "import importlib\n"
            "for name in {!r}: importlib.import_module(name)\n"
            "assert 'cryptography' not in sys.modules\n").format(SLAVE_MODULES)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_vzslave_runs_on_python_3_6_by_vermin():
    # The venv's own, as for ruff: CI runs the venv's python without activating it.
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.exists(vermin):
        vermin = shutil.which("vermin") or pytest.skip(
            "vermin is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [vermin, "--no-tips", "--violations", "-t=3.6-", os.path.join(ROOT, "vzslave")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout


def test_vzmaster_all_lists_exactly_its_public_names():
    public = {name for name in dir(vzmaster)
              if not name.startswith("_") and not isinstance(getattr(vzmaster, name),
                                                             type(os))}
    assert set(vzmaster.__all__) == public | {"__version__"}
    assert sorted(vzmaster.__all__) == vzmaster.__all__


def test_importing_vzmaster_does_not_import_paramiko():
    code = "import sys, vzmaster; assert 'paramiko' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_old_name_of_the_imaging_package_still_imports_with_a_warning():
    """vzmaster.build was renamed vzmaster.imaging; for one release the old name works."""
    import importlib
    import sys
    import warnings
    sys.modules.pop("vzmaster.build", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shim = importlib.import_module("vzmaster.build")
    from vzmaster import imaging
    assert shim.build_image is imaging.build_image and shim.Recipe is imaging.Recipe
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
