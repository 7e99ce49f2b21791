"""An expand over an unfinished migrate says it grows the migrate's new
replicas too only where it goes on (before the migrate's handover); over a
migrate that handed over it is refused, and says nothing of the kind."""

from tests.helpers.fakefleet import fake_fleet, football

fleet = fake_fleet

EXIT_ILLEGAL = 191
GROWS_TOO = "the expand grows its new replicas too"


def said(events):
    return " ".join(event["text"] for event in events if event.get("event") == "message")


def test_an_expand_refused_over_a_migrate_that_handed_over_does_not_say_it_grows_its_replicas(
        fleet):
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:started", "migrate",
                               "vm1", "b1", "b2")
    assert code == 1, stderr
    code, events, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == EXIT_ILLEGAL, stderr
    assert "handed over" in stderr, stderr
    assert GROWS_TOO not in said(events) + stderr, (said(events), stderr)


def test_an_expand_over_a_migrate_before_its_handover_says_it_grows_the_new_replicas_too(
        fleet):
    code, _, stderr = football(fleet, "--debug-injection-point", "wait:synced", "migrate",
                               "vm1", "b1", "b2")
    assert code == 1, stderr
    code, events, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    text = said(events)
    assert GROWS_TOO in text and "run the migrate again afterwards" in text, text
    # said under the expand's own announcement, once
    assert text.index("* expanding vm1") < text.index(GROWS_TOO), text
    assert text.count(GROWS_TOO) == 1, text
