"""The Subsystem's drop-in and marked block, rendered."""

from vzmaster.provision import sshd

CONFIG = b"Port 22\nMatch User backup\n  ForceCommand /bin/false\n"


def test_the_block_goes_first_so_no_match_block_holds_it():
    text = sshd.with_block(CONFIG).decode()
    assert text.startswith(sshd.BEGIN + "\nSubsystem vzslave /usr/local/bin/vzslave\n"
                           + sshd.END + "\n")
    assert text.endswith(CONFIG.decode())


def test_a_second_block_replaces_the_first_and_keeps_its_extra_lines():
    once = sshd.with_block(CONFIG, extra="PasswordAuthentication no\n")
    twice = sshd.with_block(once)
    assert twice == once
    assert twice.decode().count(sshd.BEGIN) == 1


def test_a_subsystem_registered_by_hand_is_foreign():
    assert sshd.foreign_subsystem(b"Subsystem  vzslave /opt/vz/bin/vzslave\n")
    assert not sshd.foreign_subsystem(sshd.with_block(CONFIG))


def test_the_dropin_names_the_launcher():
    assert sshd.dropin_text().endswith(b"Subsystem vzslave /usr/local/bin/vzslave\n")


def test_the_block_comes_out_leaving_the_config_as_before():
    assert sshd.without_block(sshd.with_block(CONFIG, extra="X yes\n")) == CONFIG
