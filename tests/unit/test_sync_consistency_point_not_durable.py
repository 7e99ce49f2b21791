"""A sync's consistency point is where the source's log ended after the
last chunk was copied (`SyncClient._source_log_end`, from the source's
listing). The listing says how far each logfile is durable; after a failed
fdatasync at the source it said the older, shorter size, although the
source's disk, which the copy came from, holds blocks of the records past
it (a write reaches the disk once its record is appended, durable or not).
The point then lay before records whose blocks the copy held, while the
copy missed earlier records' blocks (copied before those were written): a
replica that had replayed that far counted as consistent, and the source
serves nothing past it. No point is recorded then: the sync says why and
stays unfinished."""

import errno
import os
from types import SimpleNamespace

import pytest
import trio

from mars.errors import PeerError
from mars.logfile import LogWriter
from mars.syncclient import SyncClient
from mars.transfer import DataServer

LOGFILE = "log-000000001-h1"
START = "log-000000001-h1,0,0"


def source_and_client(tmp_path):
    directory = tmp_path / "h1" / "resource-vm1"
    directory.mkdir(parents=True)
    server = DataServer(str(tmp_path / "h1"), lambda res: "", lambda res: 0)

    async def request(state, host, port, header):
        return await server.answer_fetch(header)

    worker = SimpleNamespace(res="vm1", host="h2",
                             channels=SimpleNamespace(request=request))
    return directory / LOGFILE, server, SyncClient(worker)


def log_end(client):
    return trio.run(client._source_log_end, None, "h1", START)


def test_the_sync_has_no_consistency_point_where_the_sources_log_is_not_durable(
        tmp_path, monkeypatch):
    path, server, client = source_and_client(tmp_path)
    writer = LogWriter(str(path), 1)
    writer.append(1000, 0, b"a" * 4096)
    writer.sync()
    durable = log_end(client)
    assert durable is not None          # listed: durable up to its size now
    # the device appends two more writes (their blocks go to the disk, which
    # the sync copies); the listing's fdatasync of the logfile then fails
    writer.append(1001, 4096, b"b" * 4096)
    writer.append(1002, 8192, b"c" * 4096)
    real = os.fdatasync

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(PeerError, match="not durable") as refused:
        log_end(client)
    assert "h1" in str(refused.value) and "restart" in str(refused.value)
    monkeypatch.setattr(os, "fdatasync", real)
    with pytest.raises(PeerError):      # kept: Linux says a lost write-back once
        log_end(client)
    writer.close()


def test_a_durable_log_gives_the_consistency_point_at_its_end(tmp_path):
    path, server, client = source_and_client(tmp_path)
    writer = LogWriter(str(path), 1)
    writer.append(1000, 0, b"a" * 4096)
    writer.append(1001, 4096, b"b" * 4096)      # not synced by its writer: the listing does
    end = log_end(client)
    assert end.startswith(f"{LOGFILE},{os.path.getsize(path)},")
    writer.close()
