"""The Lamport clock: now = max(wall clock ns, last seen stamp + 1)."""

import threading

from mars.lamport import LamportClock
from tests.unit.conftest import FakeWall


def test_now_is_strictly_increasing_when_the_wall_clock_stands_still():
    clock = LamportClock(wall=FakeWall(5_000))
    stamps = [clock.now() for _ in range(100)]
    assert stamps == sorted(set(stamps))
    assert stamps[0] == 5_000
    assert stamps[-1] == 5_099


def test_now_is_never_behind_the_wall_clock():
    wall = FakeWall(1_000)
    clock = LamportClock(wall=wall)
    for now in (1_000, 7_000, 7_001, 10**18):
        wall.now = now
        assert clock.now() >= now
    wall.now = 2 * 10**18
    assert clock.now() == 2 * 10**18


def test_observe_of_a_future_stamp_makes_now_exceed_it():
    clock = LamportClock(wall=FakeWall(1_000))
    clock.observe(50_000)
    assert clock.last == 50_000
    assert clock.now() == 50_001


def test_observe_of_an_older_stamp_does_not_move_the_clock_back():
    clock = LamportClock(wall=FakeWall(1_000))
    clock.observe(90_000)
    clock.observe(10)
    assert clock.last == 90_000
    assert clock.now() > 90_000


def test_wall_clock_going_backwards_still_gives_increasing_stamps():
    wall = FakeWall(10**15)
    clock = LamportClock(wall=wall)
    first = clock.now()
    wall.now = 10**9          # NTP stepped the clock back
    second = clock.now()
    third = clock.now()
    assert first < second < third
    assert second == first + 1


def test_clock_starts_after_the_last_stamp_it_is_given():
    clock = LamportClock(last=10**12, wall=FakeWall(5))
    assert clock.now() == 10**12 + 1


def test_now_is_unique_across_threads():
    clock = LamportClock(wall=FakeWall(1))
    stamps = []
    lock = threading.Lock()

    def issue():
        mine = [clock.now() for _ in range(2_000)]
        with lock:
            stamps.extend(mine)

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(stamps)) == len(stamps) == 8_000
