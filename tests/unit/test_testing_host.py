"""The boxes' pure helpers: a dpkg status without some packages, and their files.
(The rest of vzmaster.testing.host needs root: tests/system/test_box.py.)"""

from vzmaster.testing.host import dpkg_files, dpkg_status_without

STATUS = """\
Package: python3
Status: install ok installed
Depends: python3.11 (>= 3.11.2-1~)

Package: python3-yaml
Status: install ok installed
Depends: python3 (<< 3.12), python3:any, libyaml-0-2

Package: tool
Status: install ok installed
Depends: python3 | perl

Package: perl
Status: install ok installed
"""


def test_a_package_and_whatever_needs_it_leave_the_status():
    status, gone = dpkg_status_without(STATUS, {"python3"})
    assert gone == {"python3", "python3-yaml"}
    assert "Package: python3\n" not in status and "python3-yaml" not in status


def test_a_package_that_has_another_way_to_its_need_stays():
    status, _ = dpkg_status_without(STATUS, {"python3"})
    assert "Package: tool\n" in status and "Package: perl\n" in status


def test_the_files_of_packages_are_their_listed_files_and_dpkgs_own(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3.11").write_text("")
    info = tmp_path / "info"
    info.mkdir()
    (info / "python3.11.list").write_text("{0}/bin\n{0}/bin/python3.11\n".format(tmp_path))
    (info / "python3.11.postinst").write_text("")
    (info / "libpython3.11-stdlib:amd64.md5sums").write_text("")
    (info / "python3.11-venv.list").write_text("")
    files = dpkg_files({"python3.11", "libpython3.11-stdlib"}, str(info))
    assert sorted(files) == sorted([
        str(info / "python3.11.list"), str(tmp_path / "bin" / "python3.11"),
        str(info / "python3.11.postinst"), str(info / "libpython3.11-stdlib:amd64.md5sums")])
