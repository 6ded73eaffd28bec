"""Events: the base says nothing, so a caller overrides only what it shows."""

from vzmaster.fleet.events import Events


def test_the_base_events_accept_every_stage_and_progress_silently(capsys):
    events = Events()
    events.stage("fra1", "web", "push", "10 bytes")
    events.progress("fra1", "web", 5, 10)
    assert capsys.readouterr() == ("", "")
