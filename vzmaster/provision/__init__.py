"""Making a fresh VPS a vz node from the master, over SSH alone (``vzmaster node ...``).

Modules: ``remote`` (a login session: commands as argv, files written atomically and
checked), ``probe`` (what the node is: OS, init, Pythons, sshd, virtualisation, room,
clock), ``keys`` (authorized_keys merged, never a duplicate), ``sshd`` (the Subsystem
registered, checked with ``sshd -t``, reloaded without cutting a session),
``supervisor`` (the vz supervisor where PID 1 ignores inittab), ``vzyml`` (the node
written into vz.yml, comments and order kept), ``steps`` (what each step did), and the
commands: ``add``, ``check``, ``upgrade``, ``remove``.
"""
