"""vz: run real services on cheap, unreliable VPS from many vendors."""

import re

from setuptools import find_packages, setup

# Read, not imported: the build runs without the source tree on sys.path.
with open("vzslave/__init__.py", encoding="utf-8") as init:
    __version__ = re.search(r'__version__ = "([^"]+)"', init.read()).group(1)

setup(
    name="vz",
    version=__version__,
    description="Deploy and supervise chroot containers on cheap VPS over SSH",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["vzslave", "vzslave.*", "vzmaster", "vzmaster.*"]),
    # The node side (vzslave) needs only this, and runs on Python 3.6+
    # (tests/unit/test_layering.py checks the minimum with vermin).
    install_requires=["msgpack>=1.0"],
    python_requires=">=3.6",
    extras_require={
        # The master side (vzmaster) needs Python 3.9+.
        # Building images (vzmaster build): ELF reading, zstd packing.
        # The fleet (vz.yml): YAML, its checking, the terminal output.
        # The agent file for nodes (vzmaster.agent): vermin checks the bundled msgpack
        # runs on the nodes' Python 3.6.
        "master": ["paramiko>=3.2", "cryptography>=41", "pyelftools>=0.29", "zstandard>=0.22",
                   "pyyaml>=5.4", "pydantic>=2.5", "rich>=13",
                   # node add writes vz.yml keeping its comments: a round-trip YAML.
                   "ruamel.yaml>=0.17",
                   # the agent zipapp's build checks the bundled msgpack runs on 3.6.
                   "vermin>=1.6"],
        # vz.yml's inventory: an Ansible inventory, read by ansible-core itself.
        "ansible": ["ansible-core>=2.14"],
        # Only on nodes whose PID 1 ignores /etc/inittab (systemd, upstart): the
        # vz supervisor of initscripts/ daemonises with it.
        "supervisor": ["python-daemon>=2.2"],
        "test": [
            "paramiko>=3.2", "cryptography>=41", "pytest>=7", "hypothesis>=6",
            "pytest-mock>=3", "mypy>=1.8", "ruff>=0.4", "vermin>=1.6",
            "types-paramiko", "zstandard>=0.22", "python-daemon>=2.2", "pyelftools>=0.29",
            "pyyaml>=5.4", "pydantic>=2.5", "rich>=13", "types-PyYAML", "ansible-core>=2.14",
            "ruamel.yaml>=0.17",
        ],
    },
    entry_points={
        "console_scripts": [
            "vzslave = vzslave.server:main",
            "vzmaster = vzmaster.cli:main",
            "runch = vzslave.runch:main",
        ],
    },
    data_files=[("share/vz/sshd_config.d", ["sshd_config.d/vzslave.conf"])],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Systems Administration",
    ],
)
