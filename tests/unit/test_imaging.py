"""vzmaster.imaging loads its modules when a name is first used, not at import."""

import subprocess
import sys


def loaded_after(code):
    done = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join("
                           "sorted(m for m in sys.modules if m.split('.')[0] in "
                           "('elftools', 'zstandard', 'vzmaster'))))"],
                          stdout=subprocess.PIPE, check=True, universal_newlines=True)
    return set(done.stdout.split())


def test_importing_the_package_loads_neither_pyelftools_nor_zstandard():
    """Every vzmaster command builds its parser from here: none may pay for them."""
    loaded = loaded_after("import vzmaster.imaging")
    assert "elftools" not in loaded and "zstandard" not in loaded
    assert "vzmaster.imaging.builder" not in loaded


def test_a_public_name_loads_its_module_on_first_use():
    loaded = loaded_after("from vzmaster.imaging import Recipe")
    assert "vzmaster.imaging.builder" in loaded


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    import vzmaster.imaging
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        vzmaster.imaging.Nothing  # noqa: B018
