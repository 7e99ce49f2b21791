"""Transaction logfile records: round trip, digests, compression, torn tails
and corruption found at the right place."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars.logfile import (
    HEADER, MAGIC, LogScan, LogWriter, encode_record, last_sequence, logfile_name,
    parse_logfile_name, truncate_torn_tail)
from mars.replay import record_digests
from tests.unit.conftest import write_log

WRITES = st.lists(st.tuples(st.integers(0, 1 << 40), st.binary(max_size=3000)), max_size=12)


def scan(path, **options):
    scanner = LogScan(path, **options)
    return list(scanner), scanner.damage


@pytest.mark.parametrize("digest_type", ["crc32c", "md5", "sha1"])
@pytest.mark.parametrize("compress", [False, True])
def test_every_appended_record_scans_back_identical(tmp_path, digest_type, compress):
    writes = [(0, b"a" * 4096), (4096, os.urandom(512)), (1 << 30, b""), (7, b"xyz" * 1000)]
    written = write_log(tmp_path / "log", writes, first_sequence=41,
                        digest_type=digest_type, compress=compress)
    records, damage = scan(tmp_path / "log", expected_sequence=41)
    assert damage is None
    assert records == written
    assert [(r.offset, r.data) for r in records] == writes
    assert [r.sequence for r in records] == [41, 42, 43, 44]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=WRITES, compress=st.booleans())
def test_round_trip_of_arbitrary_writes(tmp_path, writes, compress):
    path = tmp_path / f"log-{os.urandom(4).hex()}"
    write_log(path, writes, compress=compress)
    records, damage = scan(path)
    assert damage is None
    assert [(r.offset, r.data) for r in records] == writes


@pytest.mark.parametrize("compress", [False, True])
def test_records_appended_together_are_the_bytes_of_records_appended_one_by_one(
        tmp_path, compress):
    """Also across the iovec limit (two buffers a record, 1,024 a writev)."""
    writes = [(index, index * 4096, os.urandom(64) * (index % 5)) for index in range(700)]
    one = LogWriter(tmp_path / "one", 5, compress=compress)
    for stamp, offset, data in writes:
        one.append(stamp, offset, data)
    many = LogWriter(tmp_path / "many", 5, compress=compress)
    ends = many.append_many(writes[:3]) + many.append_many(writes[3:])
    assert (tmp_path / "one").read_bytes() == (tmp_path / "many").read_bytes()
    assert (many.size, many.next_sequence) == (one.size, one.next_sequence) == \
        (os.path.getsize(tmp_path / "many"), 705)
    records, damage = scan(tmp_path / "many", expected_sequence=5)
    assert damage is None and [record.end for record in records] == ends


def test_compression_is_kept_only_when_it_shrinks_the_record():
    repetitive, random_data = b"\0" * 4096, os.urandom(4096)
    assert len(encode_record(1, 1, 0, repetitive, compress=True)) < 200
    assert len(encode_record(1, 1, 0, random_data, compress=True)) == HEADER.size + 4096


def test_a_torn_tail_at_every_cut_keeps_every_complete_record_before_it(tmp_path):
    path = tmp_path / "log"
    written = write_log(path, [(0, b"first" * 10), (100, b"second" * 10), (200, b"third" * 10)])
    whole = path.read_bytes()
    for cut in range(1, len(whole)):
        path.write_bytes(whole[:cut])
        records, damage = scan(path)
        complete = [r for r in written if r.end <= cut]
        assert records == complete, cut
        if cut in (r.end for r in written):
            assert damage is None
        else:
            resume_at = complete[-1].end if complete else 0
            assert damage.torn_tail and damage.position == resume_at, (cut, damage)


def test_a_corrupted_record_in_the_middle_stops_the_scan_there_and_is_not_a_torn_tail(tmp_path):
    path = tmp_path / "log"
    written = write_log(path, [(0, b"a" * 100), (100, b"b" * 100), (200, b"c" * 100)])
    data = bytearray(path.read_bytes())
    data[written[1].position + HEADER.size + 10] ^= 0x01        # one bit in the payload
    path.write_bytes(bytes(data))
    records, damage = scan(path)
    assert records == written[:1]
    assert damage.position == written[1].position
    assert damage.reason == "digest mismatch"
    assert not damage.torn_tail
    assert "corrupt record" in str(damage) and str(path) in str(damage)
    with pytest.raises(ValueError, match="refusing to truncate"):
        truncate_torn_tail(path, damage)


def test_a_digest_mismatch_in_the_last_record_is_a_torn_tail(tmp_path):
    path = tmp_path / "log"
    written = write_log(path, [(0, b"a" * 100), (100, b"b" * 100)])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    records, damage = scan(path)
    assert records == written[:1] and damage.torn_tail


def test_payload_that_contains_the_magic_does_not_make_a_torn_tail_look_corrupt(tmp_path):
    path = tmp_path / "log"
    written = write_log(path, [(0, b"x" * 50), (0, MAGIC * 50)])
    path.write_bytes(path.read_bytes()[:-1])
    records, damage = scan(path)
    assert records == written[:1] and damage.torn_tail


def test_a_sequence_gap_stops_the_scan(tmp_path):
    path = tmp_path / "log"
    write_log(path, [(0, b"a")], first_sequence=1)
    write_log(path, [(0, b"b")], first_sequence=3)
    records, damage = scan(path)
    assert [r.sequence for r in records] == [1]
    assert "sequence 3 where 2 was expected" in damage.reason


def test_writing_continues_after_the_torn_tail_is_cut(tmp_path):
    path = tmp_path / "log"
    write_log(path, [(0, b"kept"), (8, b"torn")])
    path.write_bytes(path.read_bytes()[:-2])
    records, damage = scan(path)
    assert truncate_torn_tail(path, damage)
    write_log(path, [(16, b"after")], first_sequence=records[-1].sequence + 1)
    records, damage = scan(path)
    assert damage is None
    assert [r.data for r in records] == [b"kept", b"after"]


def test_scanning_resumes_from_a_position(tmp_path):
    path = tmp_path / "log"
    written = write_log(path, [(0, b"a"), (1, b"b"), (2, b"c")])
    records, damage = scan(path, position=written[1].position, expected_sequence=2)
    assert records == written[1:] and damage is None


def test_unknown_digest_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown digest 'crc64'"):
        LogWriter(tmp_path / "log", 1, digest_type="crc64")


def test_logfile_names_round_trip_and_bad_names_are_refused():
    assert logfile_name(42, "h1") == "log-000000042-h1"
    assert parse_logfile_name("log-000000042-h1") == (42, "h1")
    for bad in ("log-42-h1", "log-000000042-H1", "log-000000042-h1\n", "x"):
        with pytest.raises(ValueError):
            parse_logfile_name(bad)
    with pytest.raises(ValueError):
        logfile_name(0, "h1")


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=WRITES, compress=st.booleans(), first=st.integers(1, 1 << 40),
       cut=st.floats(0, 1.2))
def test_the_headers_alone_give_what_a_full_scan_gives_and_no_payload_is_read(
        tmp_path, writes, compress, first, cut):
    """What a handover needs of the last logfile, on both sides inside the
    downtime: its last sequence number (where the next logfile goes on)
    and its records' digests up to an end (the version). From the headers
    alone they are what a full scan finds (also with compressed records,
    whose stored length differs; an end inside a record leaves it out),
    reading 60 bytes per record and no payload."""
    path = tmp_path / f"log-{os.urandom(4).hex()}"
    write_log(path, writes, first_sequence=first, compress=compress)
    records, _ = scan(path)
    end = int(os.path.getsize(path) * cut)
    with open(path, "r+b") as handle:        # payloads nobody may read: a scan would stop
        for record in records:
            # every byte changed (a payload of 0xff bytes stayed as it was)
            start = record.position + HEADER.size
            length = record.end - start
            payload = os.pread(handle.fileno(), length, start)
            os.pwrite(handle.fileno(), bytes(byte ^ 0xff for byte in payload), start)
    if any(record.end - record.position > HEADER.size for record in records):
        assert len(scan(path)[0]) < len(records)
    reads = []
    real = os.pread

    def counted(fd, count, offset):
        reads.append(count)
        return real(fd, count, offset)

    os.pread = counted
    try:
        found = last_sequence(path)
        digests = record_digests(path, end)
    finally:
        os.pread = real
    assert found == (records[-1].sequence if records else 0)
    assert digests == [record.digest for record in records if record.end <= end]
    assert set(reads) <= {HEADER.size}


# --------------------------------------------- bytes held in memory (replay)
def held_pieces(data, cuts, keep):
    """[(start, view)] of `data` cut at `cuts`, the pieces whose index is
    in `keep`, each in its own writable buffer (as fetch replies are)."""
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [(start, memoryview(bytearray(data[start:end])))
            for index, (start, end) in enumerate(zip(bounds, bounds[1:]))
            if index in keep and end > start]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 30_000), max_size=6),
       keep=st.sets(st.integers(0, 6)), compress=st.booleans())
def test_a_scan_reads_held_bytes_from_memory_and_the_rest_from_the_file(
        tmp_path, cuts, keep, compress):
    """What is held is read from memory: the file holds zeros there and
    the scan still finds every record; what is not held comes from the
    file. Records across two held pieces, and across a held piece and
    the file, scan whole."""
    writes = [(4096 * number, os.urandom(size)) for number, size in
              enumerate([100, 5000, 1, 4096, 12_000, 0, 777])]
    path = tmp_path / f"log-{os.urandom(4).hex()}"
    written = write_log(path, writes, compress=compress)
    data = path.read_bytes()
    cuts = [cut for cut in cuts if cut < len(data)]
    held = held_pieces(data, cuts, keep)
    image = bytearray(data)
    for start, view in held:
        image[start:start + len(view)] = bytes(len(view))
    path.write_bytes(image)

    scanner = LogScan(path, held=held)
    records = list(scanner)
    assert scanner.damage is None
    assert [(r.offset, bytes(r.data), r.digest) for r in records] == \
        [(r.offset, bytes(r.data), r.digest) for r in written]


def test_a_record_within_one_held_piece_is_a_view_of_it_not_a_copy(tmp_path):
    path = tmp_path / "log"
    write_log(path, [(0, b"x" * 8192), (8192, b"y" * 100)])
    view = memoryview(bytearray(path.read_bytes()))
    records = list(LogScan(path, held=[(0, view)]))
    assert [bytes(r.data) for r in records] == [b"x" * 8192, b"y" * 100]
    assert all(isinstance(r.data, memoryview) and r.data.obj is view.obj for r in records)


@pytest.mark.parametrize("digest_type", ["crc32c", "md5", "sha1"])
def test_the_digest_of_a_buffer_is_the_digest_of_its_bytes(digest_type):
    data = os.urandom(70_000)
    kind = {"crc32c": 0, "md5": 1, "sha1": 2}[digest_type]
    from mars.logfile import digest
    expected = digest(kind, data[:40], data[40:])
    writable = memoryview(bytearray(data))
    assert digest(kind, writable[:40], writable[40:]) == expected
    assert digest(kind, writable.toreadonly()[:40], data[40:]) == expected
    assert digest(kind, b"", writable[:0], data) == digest(kind, data)


def test_a_staged_payload_is_checked_where_it_was_staged_and_damage_is_still_found(tmp_path):
    """`stage` gets each payload it asks for copied into its buffer, and
    the digest is checked there: a flipped byte still stops the scan."""
    path = tmp_path / "log"
    writes = [(0, os.urandom(8192)), (8192, os.urandom(100)), (16384, os.urandom(8192))]
    write_log(path, writes)
    buffers = []

    def stage(offset, length):
        if length < 4096:
            return None
        buffers.append(bytearray(length))
        return memoryview(buffers[-1])

    records = list(LogScan(path, stage=stage))
    assert [(r.offset, bytes(r.data)) for r in records] == writes
    assert records[0].data.obj is buffers[0] and records[2].data.obj is buffers[1]

    data = bytearray(path.read_bytes())
    data[records[2].position + HEADER.size + 5] ^= 1
    path.write_bytes(data)
    scanner = LogScan(path, stage=stage)
    assert len(list(scanner)) == 2 and scanner.damage.reason == "digest mismatch"


def _lengths_past_the_end(path, written):
    """The middle record's header claims more payload than the file holds,
    while a valid record follows it (a damaged header, not a torn tail)."""
    data = bytearray(path.read_bytes())
    fields = list(HEADER.unpack_from(data, written[1].position))
    fields[8] = fields[9] = len(data)       # length, stored length
    HEADER.pack_into(data, written[1].position, *fields)
    path.write_bytes(bytes(data))


def test_a_growing_copy_cut_short_in_a_record_waits_for_its_rest_without_searching_it(
        tmp_path, monkeypatch):
    """A copy still being fetched ends inside a record at the end of every
    replay step: that is its rest not come yet, a torn tail, told without
    reading and searching the partial record's bytes."""
    path = tmp_path / "log"
    written = write_log(path, [(0, b"a" * 100), (100, os.urandom(8000))])
    path.write_bytes(path.read_bytes()[:written[1].position + HEADER.size + 3000])
    monkeypatch.setattr(LogScan, "_is_tail", lambda *_: pytest.fail("searched the rest"))
    records, damage = scan(path, growing=True)
    assert records == written[:1]
    assert damage.torn_tail and damage.position == written[1].position
    assert "cut short" in damage.reason


def test_a_complete_copy_with_a_header_that_claims_past_its_end_is_damage_not_a_tail(tmp_path):
    path = tmp_path / "log"
    written = write_log(path, [(0, b"a" * 100), (100, b"b" * 100), (200, b"c" * 100)])
    _lengths_past_the_end(path, written)
    records, damage = scan(path)
    assert records == written[:1]
    assert not damage.torn_tail and "cut short" in damage.reason
    # growing, it is the rest not come yet (the digest tells once it has)
    records, damage = scan(path, growing=True)
    assert damage.torn_tail


def test_a_growing_copy_still_searches_after_damage_that_is_not_a_cut_record(tmp_path):
    path = tmp_path / "log"
    written = write_log(path, [(0, b"a" * 100), (100, b"b" * 100), (200, b"c" * 100)])
    data = bytearray(path.read_bytes())
    data[written[1].position + HEADER.size + 10] ^= 0x01
    path.write_bytes(bytes(data))
    records, damage = scan(path, growing=True)
    assert records == written[:1] and not damage.torn_tail
