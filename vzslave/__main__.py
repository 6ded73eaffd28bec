"""``python -m vzslave``: the same as the ``vzslave`` command."""

from vzslave.server import main

if __name__ == "__main__":
    main()
