"""authorized_keys: the key added once, every other byte kept."""

import pytest

from vzmaster.provision import keys

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@master"


def test_the_key_is_appended_after_the_lines_there():
    existing = b"# admin\nssh-rsa AAAAB3NzaC1yc2E= admin\n"
    assert keys.with_key(existing, KEY) == existing + KEY.encode() + b"\n"


def test_a_file_without_a_final_newline_gets_one_before_the_key():
    assert keys.with_key(b"ssh-rsa AAAAB3NzaC1yc2E= a", KEY) == (
        b"ssh-rsa AAAAB3NzaC1yc2E= a\n" + KEY.encode() + b"\n")


def test_a_key_already_there_with_options_or_another_comment_is_not_added_again():
    existing = b'from="10.0.0.1" ' + KEY.rsplit(" ", 1)[0].encode() + b" other\n"
    assert keys.with_key(existing, KEY) is None


@pytest.mark.parametrize("bad", ["", "hello", "ssh-ed25519", "ssh-ed25519 !!notbase64!!",
                                 "ssh-dss AAAA"])
def test_what_is_not_a_public_key_is_refused(bad):
    with pytest.raises(ValueError):
        keys.with_key(b"", bad)
