"""Replay of logfiles onto a disk (in order, idempotent, resumable) and the
version chain that tells equal histories from forked ones."""

import fcntl
import hashlib
import os
import random

import pytest

from mars import directio
from mars.directio import DirectWriter, DiskWriter
from mars.replay import Cursor, record_digests, replay, version_value, versions_agree
from tests.unit.conftest import make_disk, random_writes, write_log

DISK_SIZE = 1 << 20


def writes_of(seed, count=200):
    return random_writes(seed, count, DISK_SIZE, lengths=(512, 4096, 65536, 7))


def apply_directly(path, writes):
    with open(path, "r+b") as disk:
        for offset, data in writes:
            disk.seek(offset)
            disk.write(data)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def scene(tmp_path):
    writes = writes_of(1)
    write_log(tmp_path / "log-000000001-h1", writes)
    apply_directly(make_disk(tmp_path / "expected", DISK_SIZE), writes)
    make_disk(tmp_path / "replica", DISK_SIZE)
    return tmp_path, writes


def test_replaying_a_logfile_gives_the_same_disk_as_the_writes_themselves(scene):
    tmp, writes = scene
    fd = os.open(tmp / "replica", os.O_RDWR)
    try:
        result = replay(tmp / "log-000000001-h1", fd)
    finally:
        os.close(fd)
    assert result.applied == len(writes) and result.damage is None
    assert result.position == (tmp / "log-000000001-h1").stat().st_size
    assert sha(tmp / "replica") == sha(tmp / "expected")


def test_replay_in_pieces_from_the_cursor_equals_replay_in_one_go(scene):
    tmp, writes = scene
    fd = os.open(tmp / "replica", os.O_RDWR)
    try:
        position, sequence = 0, 1
        while True:
            result = replay(tmp / "log-000000001-h1", fd, position, sequence, limit=37)
            if not result.applied:
                break
            position, sequence = result.position, result.last_sequence + 1
    finally:
        os.close(fd)
    assert sha(tmp / "replica") == sha(tmp / "expected")


def test_replay_stops_where_the_history_ends_the_logfile_though_the_copy_goes_on(scene):
    """A replica that fetched more of a dead primary's last logfile than
    the replica that took over (`until`: where the new primary ended it)
    applied it all, and was a split brain where it could have followed
    the new primary."""
    tmp, writes = scene
    ends = _record_ends(tmp / "log-000000001-h1")
    with open(tmp / "expected", "r+b") as expected:
        expected.write(bytes(DISK_SIZE))
    apply_directly(tmp / "expected", writes[:120])
    fd = os.open(tmp / "replica", os.O_RDWR)
    try:
        result = replay(tmp / "log-000000001-h1", fd, until=ends[119])
        again = replay(tmp / "log-000000001-h1", fd, result.position, until=ends[119])
    finally:
        os.close(fd)
    assert (result.applied, result.position) == (120, ends[119])
    assert again.applied == 0 and again.position == ends[119]
    assert sha(tmp / "replica") == sha(tmp / "expected")


def _record_ends(path):
    from mars.logfile import LogScan
    return [record.end for record in LogScan(path)]


def test_replaying_records_again_after_a_crash_before_the_cursor_was_saved_is_harmless(scene):
    tmp, _ = scene
    fd = os.open(tmp / "replica", os.O_RDWR)
    try:
        first = replay(tmp / "log-000000001-h1", fd, limit=120)
        replay(tmp / "log-000000001-h1", fd, 0, 1)              # cursor lost: from the start
        again = replay(tmp / "log-000000001-h1", fd, first.position, first.last_sequence + 1)
    finally:
        os.close(fd)
    assert again.applied == 80
    assert sha(tmp / "replica") == sha(tmp / "expected")


def test_replay_stops_at_a_torn_tail_and_reports_it(scene):
    tmp, writes = scene
    log = tmp / "log-000000001-h1"
    log.write_bytes(log.read_bytes()[:-1])
    fd = os.open(tmp / "replica", os.O_RDWR)
    try:
        result = replay(log, fd)
    finally:
        os.close(fd)
    assert result.applied == len(writes) - 1
    assert result.damage.torn_tail and result.damage.position == result.position


def test_cursor_round_trips_and_refuses_garbage():
    cursor = Cursor("log-000000007-h1", 4096, 8192)
    assert str(cursor) == "log-000000007-h1,4096,8192"
    assert Cursor.parse(str(cursor)) == cursor
    with pytest.raises(ValueError, match="malformed replay cursor"):
        Cursor.parse("log-000000007-h1,x")


def test_equal_histories_give_equal_versions_and_a_fork_does_not(tmp_path):
    common = writes_of(2, 50)
    write_log(tmp_path / "a", common + writes_of(3, 5))
    write_log(tmp_path / "b", common + writes_of(3, 5))
    write_log(tmp_path / "c", common + writes_of(4, 5))     # forked history
    previous = version_value("", "log-000000001-h1", 100, [b"x" * 20])

    def version(name):
        end = (tmp_path / name).stat().st_size
        return version_value(previous, "log-000000002-h1", end,
                             record_digests(tmp_path / name, end))

    assert version("a") == version("b")
    assert versions_agree(version("a"), version("b"))
    assert not versions_agree(version("a"), version("c"))
    assert version("a").endswith(":" + previous.split(":")[0])


def test_the_chain_carries_history_a_different_past_changes_every_later_version():
    one = version_value("", "log-000000001-h1", 10, [b"a" * 20])
    other = version_value("", "log-000000001-h1", 10, [b"b" * 20])
    assert not versions_agree(version_value(one, "log-000000002-h1", 5, []),
                              version_value(other, "log-000000002-h1", 5, []))


# ----------------------------------------------------- past the page cache
class DirectSpy(DirectWriter):
    """A DirectWriter that notes each piece it wrote direct."""

    def __init__(self, path):
        super().__init__(path)
        self.pieces = []

    def write(self, piece, start):
        done = super().write(piece, start)
        if done:
            self.pieces.append((start, len(piece)))
        return done


def mixed_writes():
    """Large aligned writes (direct) among small, unaligned and odd-length
    ones (the page cache), overlapping each other so that order matters."""
    rng = random.Random(9)
    return [(0, rng.randbytes(256 << 10)),          # direct
            (4096, rng.randbytes(4096)),            # small: over the one before
            (8192 + 512, rng.randbytes(200 << 10)),  # offset not aligned
            (65536, rng.randbytes(256 << 10)),      # direct, over both before
            (300 << 10, rng.randbytes((130 << 10) + 7)),   # length not aligned
            (512 << 10, rng.randbytes(128 << 10))]  # direct: the smallest that goes


def replayed_with(tmp_path, name, writes):
    write_log(tmp_path / f"log-{name}", writes)
    disk = make_disk(tmp_path / f"disk-{name}", DISK_SIZE)
    fd = os.open(disk, os.O_RDWR)
    try:
        with DirectSpy(disk) as direct:
            result = replay(tmp_path / f"log-{name}", fd, direct=direct)
    finally:
        os.close(fd)
    return result, direct.pieces, sha(tmp_path / f"disk-{name}")


def test_large_aligned_records_are_replayed_past_the_page_cache_to_the_same_disk(tmp_path):
    writes = mixed_writes()
    apply_directly(make_disk(tmp_path / "expected", DISK_SIZE), writes)
    result, direct, digest = replayed_with(tmp_path, "mixed", writes)
    assert result.applied == len(writes) and result.bytes == sum(len(d) for _, d in writes)
    assert direct == [(0, 256 << 10), (65536, 256 << 10), (512 << 10, 128 << 10)]
    assert digest == sha(tmp_path / "expected")


def test_a_disk_that_refuses_direct_io_gets_every_record_through_the_page_cache(
        tmp_path, no_direct_io):
    writes = mixed_writes()
    apply_directly(make_disk(tmp_path / "expected", DISK_SIZE), writes)
    result, direct, digest = replayed_with(tmp_path, "refused", writes)
    assert direct == [] and result.applied == len(writes)
    assert digest == sha(tmp_path / "expected")


def test_a_large_record_into_a_hole_goes_uncached_and_one_over_data_direct(tmp_path,
                                                                          monkeypatch):
    """A secondary's disk after its sync: data where the primary had some,
    holes elsewhere. A large record into a hole is written uncached (new
    blocks: no unwritten extents to convert), one over data with O_DIRECT;
    the disk is the writes' own either way."""
    rng = random.Random(12)
    writes = [(0, rng.randbytes(256 << 10)), (512 << 10, rng.randbytes(256 << 10))]
    disk = make_disk(tmp_path / "disk", DISK_SIZE)
    with open(disk, "r+b") as handle:
        handle.write(rng.randbytes(256 << 10))      # data under the first record
    fd = os.open(disk, os.O_RDWR)
    try:
        if os.lseek(fd, 0, os.SEEK_HOLE) >= DISK_SIZE:
            pytest.skip("the file system has no holes")
        seen = []
        real = directio.pwritev_all

        def spy(fd, buffers, offset, flags=0):
            seen.append(("uncached" if flags & directio.RWF_DONTCACHE else "direct"
                         if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT else "cached", offset))
            return real(fd, buffers, offset, flags)

        monkeypatch.setattr(directio, "pwritev_all", spy)
        write_log(tmp_path / "log-holes", writes)
        with DiskWriter(disk) as writer:
            result = replay(tmp_path / "log-holes", fd, direct=writer)
    finally:
        os.close(fd)
    assert result.applied == 2
    assert seen == [("direct", 0), ("uncached", 512 << 10)]
    expected = make_disk(tmp_path / "expected", DISK_SIZE)
    apply_directly(expected, writes)
    assert sha(tmp_path / "disk") == sha(tmp_path / "expected")


def test_replay_from_fetched_bytes_held_in_memory_gives_the_same_disk(tmp_path):
    """A secondary replays what its fetch holds in memory (`held`), not
    what it reads back: with the logfile zeroed where the pieces are, the
    disk is still the writes' own; large records still go direct."""
    writes = mixed_writes()
    apply_directly(make_disk(tmp_path / "expected", DISK_SIZE), writes)
    log = tmp_path / "log-held"
    write_log(log, writes)
    data = log.read_bytes()
    cut = len(data) // 3                # a record spans the two pieces
    held = [(0, memoryview(bytearray(data[:cut]))),
            (cut, memoryview(bytearray(data[cut:2 * cut])))]
    log.write_bytes(bytes(2 * cut) + data[2 * cut:])   # the rest only in the file
    disk = make_disk(tmp_path / "disk-held", DISK_SIZE)
    fd = os.open(disk, os.O_RDWR)
    try:
        with DirectSpy(disk) as direct:
            result = replay(log, fd, direct=direct, held=held)
    finally:
        os.close(fd)
    assert result.applied == len(writes) and result.damage is None
    assert len(direct.pieces) == 3
    assert sha(tmp_path / "disk-held") == sha(tmp_path / "expected")


def test_the_successor_of_a_logfile_is_the_first_later_origin_that_is_another_host():
    """A dead origin that rotated once more before it died: the host that
    went on after it is the origin of the first later logfile not its own
    (the next logfile's origin, its own, has no version of it either)."""
    from mars.follow import successor_of
    names = ["log-000000005-h1", "log-000000006-h1", "log-000000007-b", "log-000000004-h1"]
    assert successor_of("log-000000005-h1", names) == "b"
    assert successor_of("log-000000007-b", names) is None
    assert successor_of("log-000000004-h1", ["log-000000005-c"]) == "c"
