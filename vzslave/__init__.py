"""vzslave: the node side of vz, run by sshd as the ``vzslave`` Subsystem.

Standard library plus msgpack only, Python 3.6 or newer; it never imports paramiko
or vzmaster (tests/unit/test_layering.py checks both).
"""

__version__ = "0.1.0"
