"""The setup session (vzmaster.provision.remote.Shell) against a box's real sshd."""

from vzmaster.provision.remote import Shell
from vzmaster.transports import SSHOptions


def shell_to(box):
    opts = box.ssh_options()
    return Shell.open(SSHOptions(box.ip, user="root", key_filename=opts["key_filename"],
                                 known_hosts=opts["known_hosts"], sock=box.connect(),
                                 ssh_config=None))


def test_a_command_that_floods_stderr_beyond_the_channel_window_still_finishes(make_box):
    """When a command writes more to stderr than the SSH window holds (2 MiB) while
    stdout is read, both streams are drained and the command ends."""
    with shell_to(make_box()) as shell:
        done = shell.run(["sh", "-c", "head -c 5000000 /dev/zero >&2; echo finished"],
                         check=False, timeout=20)
    assert done.status == 0 and done.stdout == b"finished\n"
    assert len(done.stderr) == 5000000
