"""A sync source whose disk holds less than the resource (here by less
than a chunk: a size of no whole MiB) answered `z` for what its disk
lacks: the new replica got zeros, counted as a copy, where the primary's
device has (or will have) its own blocks. The resource's size is the
truth: the server says its disk is too small, and the sync waits."""

from functools import partial

import pytest
import trio

from mars.transfer import CHUNK, DataServer

SIZE = 3 * CHUNK


@pytest.fixture
def serve(tmp_path):
    def server(disk_bytes):
        disk = tmp_path / "disk"
        disk.write_bytes(b"\x01" * disk_bytes)
        (tmp_path / "state").mkdir(exist_ok=True)
        return DataServer(str(tmp_path / "state"), lambda res: str(disk), lambda res: SIZE)
    return server


def ask(server, offset, count):
    header = {"type": "chunks", "res": "vm1", "offset": offset, "chunk": CHUNK, "count": count,
              "digests": None}
    return trio.run(partial(server.answer_sync, header))


@pytest.mark.parametrize("short_by", [512, CHUNK - 4096])
def test_a_sync_source_whose_disk_is_short_of_the_resource_says_so_instead_of_zeros(
        serve, short_by):
    server = serve(SIZE - short_by)
    for offset, count in [(2 * CHUNK, 1), (0, 3)]:
        reply, data = ask(server, offset, count)
        assert reply["type"] == "error", f"answered {reply} for a disk {short_by} bytes short"
        assert f"holds {SIZE - short_by} bytes" in reply["reason"] and "vm1" in reply["reason"]
        assert data == b""
    assert server.bytes_served["sync"] == 0


def test_a_sync_source_whose_disk_holds_the_resource_answers_as_before(serve):
    server = serve(SIZE + 4096)         # (a disk larger than the resource: its tail unused)
    reply, data = ask(server, 2 * CHUNK, 1)
    assert reply == {"type": "chunks", "kinds": "d"} and bytes(data) == b"\x01" * CHUNK
