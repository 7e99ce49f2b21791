"""The sync client's pure part: what syncstatus may claim when the pieces
of a range, copied over several streams, finish out of order."""

import random

from mars.syncclient import Frontier


def test_the_frontier_stays_at_the_first_gap_until_it_is_filled():
    frontier = Frontier(100)
    assert frontier.written(120, 140) == 100        # a gap at 100..120
    assert frontier.written(140, 160) == 100
    assert frontier.written(100, 120) == 160        # gap filled: all three count
    assert frontier.written(160, 170) == 170


def test_the_frontier_after_pieces_in_any_order_is_where_the_pieces_are_gapless():
    pieces = [(start, start + 16) for start in range(0, 16 * 50, 16)]
    for seed in range(20):
        order = pieces[:]
        random.Random(seed).shuffle(order)
        frontier, done = Frontier(0), set()
        for piece in order:
            done.add(piece)
            complete = frontier.written(*piece)
            expected = 0
            while (expected, expected + 16) in done:
                expected += 16
            assert complete == expected
        assert complete == 16 * 50 and not frontier.ahead
