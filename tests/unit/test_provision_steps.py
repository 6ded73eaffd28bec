"""A step's record."""

from vzmaster.provision.steps import Step


def test_a_step_says_what_whether_it_changed_and_how():
    assert Step("key", True, "added") == ("key", True, "added")
    assert Step("probe", False).detail == ""
