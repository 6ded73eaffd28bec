"""What a long fleet command tells as it goes (the CLI draws it); kept light to import."""

from __future__ import annotations


class Events:
    """A deploy's or rollback's progress. This base says nothing; override what you show."""

    def stage(self, node: str, app: str, stage: str, detail: str = "") -> None:
        """``app`` on ``node`` (either may be "") entered ``stage``: build, built, push,
        deploy, healthy, start, remove, firewall, rollback, failed or lost."""

    def progress(self, node: str, app: str, done: int, total: int) -> None:
        """The node holds ``done`` of the ``total`` bytes of ``app``'s image."""
