"""The sync's reads of a block device (an LV in production, a loop device
here) leave its page cache as they found it: the kernel takes no uncached
reads there (Linux 6.18), so the chunks the page cache held nothing of are
dropped once read (`mars.transfer.chunks_to_read`); what it held stays."""

import os
import subprocess

import pytest

from mars import libc
from mars.transfer import CHUNK, chunk_digest, local_digests, read_chunks

pytestmark = pytest.mark.root

CHUNKS = 8
PAGES = CHUNK // os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def block_device(tmp_path):
    """A loop device over a file of random chunks, and its data. Held open
    meanwhile: a block device's page cache goes with its last close."""
    backing = tmp_path / "lv.img"
    data = os.urandom(CHUNKS * CHUNK)
    backing.write_bytes(data)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True,
                            text=True, check=True).stdout.strip()
    held = os.open(device, os.O_RDONLY)
    try:
        if libc.cached_pages(held, 0, CHUNK) is None:
            pytest.skip("no cachestat(2) here (Linux 6.5)")
        os.posix_fadvise(held, 0, 0, os.POSIX_FADV_DONTNEED)
        yield device, held, data
    finally:
        os.close(held)
        subprocess.run(["losetup", "-d", device], check=True)


def cached_chunks(fd):
    return [libc.cached_pages(fd, index * CHUNK, CHUNK) for index in range(CHUNKS)]


def test_the_sync_reads_a_block_device_and_leaves_its_page_cache_as_it_was(block_device):
    device, held, data = block_device
    os.pread(held, CHUNK, 5 * CHUNK)           # the containers' cached data, say
    assert cached_chunks(held) == [0] * 5 + [PAGES] + [0] * 2
    digests = local_digests(device, 0, CHUNK, CHUNKS, CHUNKS * CHUNK)
    assert digests == [chunk_digest(data[index * CHUNK:(index + 1) * CHUNK])
                       for index in range(CHUNKS)]
    assert cached_chunks(held) == [0] * 5 + [PAGES] + [0] * 2
    digests[3] = chunk_digest(os.urandom(CHUNK))
    kinds, reply = read_chunks(device, 0, CHUNK, CHUNKS, digests, CHUNKS * CHUNK)
    assert kinds == "sssdssss" and bytes(reply) == data[3 * CHUNK:4 * CHUNK]
    kinds, reply = read_chunks(device, 0, CHUNK, CHUNKS, None, CHUNKS * CHUNK)
    assert kinds == "d" * CHUNKS and bytes(reply) == data
    assert cached_chunks(held) == [0] * 5 + [PAGES] + [0] * 2
