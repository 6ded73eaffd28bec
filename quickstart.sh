#!/usr/bin/env bash
# See vz work on this machine: installs what it needs (as .ci/install does), then
# runs examples/quickstart.py against a local test node. Debian or Ubuntu, as root.
set -euo pipefail
cd "$(dirname "$0")"
.ci/install
exec "${VZ_VENV:-$PWD/.venv}/bin/python" examples/quickstart.py
