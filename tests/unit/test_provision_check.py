"""node check: sshd settings that stand between vz and a node; a node it cannot reach."""

from vzmaster.provision.check import check_node, sshd_problems
from vzmaster.transports import SSHOptions


def test_a_node_that_cannot_be_logged_in_to_is_one_problem_with_a_fix():
    options = SSHOptions("127.0.0.1", port=1, connect_timeout=2, ssh_config=None,
                         known_hosts="/dev/null")
    [problem] = check_node("n1", options)
    assert problem.what.startswith("cannot log in: ")
    assert "node add" in problem.fix


GOOD = "port 22\npubkeyauthentication yes\npermitrootlogin without-password\n" \
       "subsystem sftp internal-sftp\nsubsystem vzslave /usr/local/bin/vzslave\n"


def whats(effective, user="root"):
    return [p.what for p in sshd_problems(effective, user, "/etc/ssh/sshd_config", "add")]


def test_sshd_settings_vz_can_work_with_are_no_problem():
    assert whats(GOOD) == []


def test_no_vzslave_subsystem_is_a_problem_fixed_by_node_add():
    [problem] = sshd_problems(GOOD.replace("subsystem vzslave", "subsystem other"), "root",
                              "/etc/ssh/sshd_config", "vzmaster node add n1 h")
    assert problem.what == "sshd has no vzslave Subsystem"
    assert problem.fix == "vzmaster node add n1 h"


def test_key_logins_turned_off_in_the_files_are_a_coming_lockout():
    [what] = whats(GOOD.replace("pubkeyauthentication yes", "pubkeyauthentication no"))
    assert "PubkeyAuthentication no" in what and "locks vz out" in what


def test_root_logins_turned_off_matter_only_when_vz_logs_in_as_root():
    effective = GOOD.replace("without-password", "no")
    assert "PermitRootLogin no" in whats(effective)[0]
    assert whats(effective, user="deploy") == []


def test_allow_users_without_the_login_user_is_a_coming_lockout():
    assert "AllowUsers leaves out root" in whats(GOOD + "allowusers alice\n")[0]
    assert whats(GOOD + "allowusers alice\nallowusers root@10.0.0.1\n") == []
