"""How the vzmaster command shows each node record."""

from vzmaster import views
from vzslave.records import BundleInfo, ContainerStatus, ImageInfo, NodeFacts

STATUS = ContainerStatus(name="web", state="crash-looping", pid=None, uptime=None, restarts=2,
                         last_exit="exit 3", last_error="no such file", next_retry=None,
                         supervisor="sysvinit", runtime="builtin", entry=None, bundle="/b",
                         log="/l")


def test_json_keeps_the_field_names_scripts_read_today():
    """The CLI names its JSON fields itself; today they are the records' fields."""
    facts = NodeFacts(1, "0.1", "n1", "6.1", "x86_64", "sysvinit", "3.11", "/var/lib/vz",
                      0, 10, 20, ["tar"])
    image = ImageInfo("a.tar", 3, "ab" * 32, "tar", 0.0)
    bundle = BundleInfo("a", "a.tar", "ab" * 32, 0.0, 4, 5, [])
    for record, shown in ((facts, views.facts(facts)), (image, views.image(image)),
                          (bundle, views.bundle(bundle)), (STATUS, views.status(STATUS))):
        assert shown.fields == record._asdict()


def test_a_pushed_image_alone_is_its_name_size_and_whole_sha256():
    shown = views.image(ImageInfo("a.tar", 3, "ab" * 32, "tar", 0.0))
    assert shown.text == "a.tar 3 sha256:" + "ab" * 32
    assert shown.row["sha256"] == "ab" * 6


def test_an_unpacked_bundle_says_which_setid_bits_went():
    shown = views.bundle(BundleInfo("a", "a.tar", "x", 0.0, 4, 5,
                                    ["bin/su", "bin/mount", "bin/ping", "bin/passwd"]))
    assert shown.text == ("a: 4 files, 5 bytes (setuid/setgid removed from bin/su, "
                          "bin/mount, bin/ping, ...)")


def test_a_status_row_says_why_the_app_is_not_up():
    row = views.status(STATUS).row
    assert (row["pid"], row["uptime"], row["detail"]) == ("-", "-",
                                                           "last exit 3; no such file")


def test_a_start_failure_shows_the_status_then_the_log_and_carries_the_log_in_json():
    shown = views.start_failure(STATUS, ["one", "two"])
    assert shown.text.endswith("\n\nlast lines of its log:\n  one\n  two")
    assert shown.text.startswith("NAME  STATE")
    assert shown.fields["log"] == ["one", "two"] and shown.fields["state"] == "crash-looping"
