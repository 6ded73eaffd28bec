"""Local test nodes for vz: "VPS in a box" (``vzmaster.testing.box``).

A box is a small VPS made of namespaces on this machine (root only): its own network,
a real init as PID 1 (busybox init or sysvinit) and the stock OpenSSH sshd with the
vzslave subsystem. vz's own tests and the quickstart use them; so can you, to try
images and deployments without renting anything::

    from vzmaster.testing.box import Hub

    with Hub() as hub:
        box = hub.box(init="sysv")
        ...  # box.ssh_options(), box.exec([...]), box.connect()

``python3 -m vzmaster.testing.box up --init sysv`` starts one by hand.
"""
