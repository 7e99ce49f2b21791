"""MARS hosts with real disks, devices and filesystems, for the root tests
and the benchmarks.

Each host gets a file standing in for its LV. `DataNet.cleanup` leaves
nothing behind, also after a failed test: it unmounts every filesystem under
the run's directory, stops the daemons by pid, detaches loop devices whose
backing file lies under it, and lazily unmounts leftover FUSE mounts."""

import contextlib
import hashlib
import os
import random
import re
import stat
import subprocess
import time
from pathlib import Path

from mars.device import loops_backed_by, mounts_under
from mars.keys import data_name, res_key, resource_dir_name
from tests.helpers.marshosts import STATE_WAIT, MarsNet, wait_until

MIB = 1 << 20


def sha256_file(path, size=None):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        left = size if size is not None else float("inf")
        while left > 0:
            chunk = handle.read(int(min(left, 4 * MIB)))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def tree_checksums(root):
    """{relative path: sha256} of every file below root."""
    result = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            result[str(path.relative_to(root))] = sha256_file(path)
    return result


def write_files(directory, count, size, prefix="f", fsync=True):
    """Write `count` random files; returns {name: sha256}."""
    written = {}
    for index in range(count):
        data = os.urandom(size)
        path = Path(directory) / f"{prefix}{index:04d}"
        with open(path, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        written[path.name] = hashlib.sha256(data).hexdigest()
    return written


def tree_without_reports(host):
    """`view-tree` without what marsd reports every round (liveness,
    replay checkpoints): the wishes and the membership."""
    return [line for line in host.marsadm("view-tree").stdout.splitlines()
            if "actual-" not in line and "/replay-" not in line]


class DataNet(MarsNet):
    """MarsNet plus disks, devices and mounts."""

    def __init__(self, base_dir, round_interval=0.2, disk_size=320 * MIB):
        super().__init__(base_dir, round_interval)
        self.disk_size = disk_size

    def add(self, name, disk_size=None):
        host = super().add(name)
        disk = host.root / "disk"
        with open(disk, "wb") as handle:
            handle.truncate(disk_size or self.disk_size)
        host.disk = disk
        host.mnt = host.root / "mnt"
        host.mnt.mkdir(exist_ok=True)
        return host

    def primary_with_device(self, *names, res="vm1", disk_sizes=None, prepare=None):
        """Hosts `names` in one cluster (disks of `disk_sizes[name]`, else the
        default); the first creates `res` on its disk and has the device up.
        `prepare(hosts)` runs before the creation."""
        hosts = [self.add(name, (disk_sizes or {}).get(name)) for name in names]
        if prepare:
            prepare(hosts)
        self.create_cluster(*hosts)
        for host in hosts:
            host.wait_serving()
        hosts[0].marsadm("create-resource", res, hosts[0].disk)
        self.wait(hosts[0], res, "device")
        return hosts

    def primary_with_replicas(self, *names, res="vm1", disk_size=None):
        """`names[0]` primary of `res` (device up, nothing mounted), the
        others joined and up to date; every disk `disk_size` bytes."""
        hosts = self.primary_with_device(*names, res=res,
                                         disk_sizes=dict.fromkeys(names, disk_size))
        for host in hosts[1:]:
            host.wait_knows(res)
            host.marsadm("join-resource", res, host.disk)
            self.wait(host, res)
        return hosts

    @staticmethod
    def device(host, res):
        return host.root / "dev" / "mars" / res

    def mkfs(self, host, res):
        subprocess.run(["mkfs.xfs", "-q", "-f", str(self.device(host, res))], check=True)

    def mount(self, host, res, fstype="xfs"):
        subprocess.run(["mount", "-t", fstype, str(self.device(host, res)), str(host.mnt)],
                       check=True)

    @staticmethod
    def umount(host):
        subprocess.run(["umount", str(host.mnt)], check=True)

    @staticmethod
    def wait(host, res, condition="up-to-date", timeout=STATE_WAIT):
        result = host.marsadm("wait-resource", res, condition, f"--timeout={timeout:g}",
                              check=False, timeout=timeout + 60)
        assert result.returncode == 0, (
            f"{host.name}: wait-resource {res} {condition} failed: {result.stderr}\n"
            f"{host.marsadm('view', res, check=False).stdout}\n{host.current_log()[-3000:]}")

    @staticmethod
    def disk_digest(host, size):
        return sha256_file(host.disk, size)

    def wait_same_disks(self, primary, secondaries, res="vm1"):
        """Wait until the primary's disk and every secondary's disk hold
        what the primary's device reads (its device up, unmounted, the
        secondaries up to date). Compared until they agree or the wait runs
        out, not once, and the device read anew each time: `up-to-date` has
        returned ~0.4 s before a secondary's disk held the primary's last
        writes, and once (CI) both disks agreed for 180 s on what the
        device no longer read when it was read first. Both fit a filesystem
        that outlives its umount in another mount namespace (a container
        starting meanwhile copies this host's mounts: `mars.device.
        claimed_elsewhere` says more) and writes its last blocks when that
        namespace lets go; the primary's write-back may also still be
        writing its last extents."""
        size = int(primary.view("sync-size", res))
        hosts = (primary, *secondaries)
        seen = {}

        def same():
            seen.clear()
            seen["device"] = sha256_file(self.device(primary, res), size)
            seen.update((host.name, self.disk_digest(host, size)) for host in hosts)
            return len(set(seen.values())) == 1

        wait_until(same, interval=0.2,
                   what=f"the disks of {', '.join(host.name for host in hosts)} to equal "
                        f"{primary.name}'s device",
                   show=lambda: {name: digest[:12] for name, digest in seen.items()})

    def cleanup(self):
        for point, fstype in mounts_under(self.base_dir):
            if not fstype.startswith("fuse") and fstype != "tmpfs":     # filesystems on devices
                if subprocess.run(["umount", point], capture_output=True).returncode:
                    subprocess.run(["umount", "-l", point], capture_output=True)
        self.stop_all()
        deadline = time.monotonic() + 10        # cleanup: a loop still open goes at its last close
        while time.monotonic() < deadline:
            loops = loops_backed_by(str(self.base_dir))
            if not loops:
                break
            for loop in loops:
                subprocess.run(["losetup", "-d", loop], capture_output=True)
            time.sleep(0.2)
        for point, _ in mounts_under(self.base_dir):           # FUSE, state dirs on tmpfs
            if subprocess.run(["umount", point], capture_output=True).returncode:
                subprocess.run(["umount", "-l", point], capture_output=True)


def device_processes(host):
    """{pid: arguments} of `host`'s device processes: those serving its
    resources (and standbys started for one), and the one its marsd keeps
    ready (`Daemon.take_standby`). Not a device process's own fork that has
    not exec'ed yet (a standby's imports run `ldconfig -p`): it has its
    parent's arguments for a moment, and a test counting two was wrong."""
    markers = (f"--resource-dir={host.root}/", f"--state-dir={host.root}/")
    found, parents = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().decode(errors="replace").split("\0")
            if "mars.device" in arguments and any(word.startswith(markers) for word in arguments):
                with open(f"/proc/{pid}/stat") as stat:
                    parents[int(pid)] = int(stat.read().rsplit(")", 1)[1].split()[1])
                found[int(pid)] = arguments
        except (OSError, IndexError, ValueError):
            continue        # it ended meanwhile
    return {pid: arguments for pid, arguments in found.items() if parents[pid] not in found}


def serving_device_pid(host):
    """The pid of the device process `host`'s marsd last started (its log)."""
    started = re.findall(r"device process (\d+) up", host.current_log())
    assert started, f"{host.name} started no device: {host.current_log()[-2000:]}"
    return int(started[-1])


def cursor_at_log_end(host, res):
    """Whether `host`'s replay cursor of `res` stands at the end of its log
    as it last told it (`actual-<host>/log-end`): the primary's disk synced
    since its last write."""
    values = host.live_values(f"resource-{res}/")
    logfile, end = values.get(f"resource-{res}/actual-{host.name}/log-end", ",").split(",")
    return values.get(f"resource-{res}/replay-{host.name}") == f"{logfile},{end},{end}"


__all__ = ["DataNet", "STATE_WAIT", "cursor_at_log_end", "device_processes", "mounts_under",
           "serving_device_pid", "sha256_file", "tree_checksums", "write_files", "wait_until"]


def write_varied_tree(root, count=200, seed=7):
    """`count` entries below `root` that a copy must keep exactly: files of
    many sizes and owners and modes in subdirectories, hard links, a sparse
    file, a symlink, extended attributes and POSIX ACLs (setfacl)."""
    rng = random.Random(seed)
    root = Path(root)
    plain = count - 16
    for index in range(plain):
        directory = root / f"d{index % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{index:04d}"
        path.write_bytes(rng.randbytes(rng.choice((0, 17, 4096, 65536 + index))))
        os.chown(path, 1000 + index % 5, 100 + index % 3)
        os.chmod(path, rng.choice((0o600, 0o644, 0o640, 0o755, 0o4755)))
    for index in range(10):                          # hard links to 5 files
        os.link(root / f"d{index % 5}" / f"f{index % 5:04d}", root / f"link{index}")
    sparse = root / "sparse"
    with open(sparse, "wb") as handle:               # 64 MiB, two blocks of data
        handle.write(b"head")
        handle.seek(64 << 20)
        handle.write(b"tail")
    for index in range(3):
        os.setxattr(root / "d0" / f"f{index * 7:04d}", "user.football", f"x{index}".encode())
    for index in range(2):
        subprocess.run(["setfacl", "-m", f"u:{1234 + index}:rw",
                        str(root / "d1" / f"f{1 + index * 7:04d}")], check=True)
    os.symlink("d0/f0000", root / "symlink")
    os.sync()


def tree_metadata(root):
    """{relative path: what a faithful copy keeps}: type, mode, owner,
    size, content digest, extended attributes (ACLs included), the group of
    hard links a file is in, and for regular files whether it is sparse."""
    root = Path(root)
    found, inodes = {}, {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = path.lstat()
            relative = str(path.relative_to(root))
            entry = {"mode": info.st_mode, "uid": info.st_uid, "gid": info.st_gid,
                     "xattrs": {key: os.getxattr(path, key, follow_symlinks=False)
                                for key in sorted(os.listxattr(path, follow_symlinks=False))}}
            if stat.S_ISLNK(info.st_mode):
                entry["target"] = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                entry.update(size=info.st_size, sha256=sha256_file(path),
                             sparse=info.st_blocks * 512 < info.st_size)
                inodes.setdefault(info.st_ino, []).append(relative)
            found[relative] = entry
    for names in inodes.values():
        for name in names:
            found[name]["links"] = sorted(names)
    return found


def drop_page_cache(path):
    """Write out and drop what the page cache holds of the file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def leave(host, res="vm1"):
    """`down`, then `leave-resource` on `host` (as kernel MARS wants it),
    waiting until its store has no replica of it and its marsd removed the
    replica's logs (a join refuses them)."""
    host.marsadm("down", res)
    host.marsadm("leave-resource", res)
    key = res_key(res, data_name(host.name))
    logs = host.root / "mars" / resource_dir_name(res)
    wait_until(lambda: not host.live_values(key) and not logs.exists(),
               what=f"{host.name} to leave {res}")


@contextlib.contextmanager
def xfs_volumes(directory, names, size="300M"):
    """Small xfs filesystems, each on a loop device (`mount -o loop`) at
    `directory/<name>`: their mountpoints; unmounted afterwards, and their
    loop devices waited for (the kernel detaches an autoclear loop after
    the unmount, a moment later on a busy machine: asserted at once, a
    test failed in teardown)."""
    mounted = []
    try:
        for name in names:
            image, mountpoint = directory / f"{name}.img", directory / name
            subprocess.run(["truncate", "-s", size, str(image)], check=True)
            subprocess.run(["mkfs.xfs", "-q", "-f", str(image)], check=True)
            mountpoint.mkdir()
            subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
            mounted.append(mountpoint)
        yield mounted
    finally:
        for mountpoint in reversed(mounted):
            subprocess.run(["umount", str(mountpoint)], check=True)
    assert not mounts_under(directory)
    wait_until(lambda: not loops_backed_by(str(directory)), what="the loop devices to go")


# A stand-in for systemctl (no systemd as PID 1 here): it logs what it is
# asked, and does what the units of a container stack would: stopping the
# mount unit unmounts the volume, starting the container unit mounts it.
STACK_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$MARS_ROOT/systemctl.log"
case "$1 $2" in
  "stop test-mnt.mount") umount "$MARS_ROOT/mnt" || umount -l "$MARS_ROOT/mnt" ;;
  "start test-ct.service") mount -t xfs "$MARS_ROOT/dev/mars/vm1" "$MARS_ROOT/mnt" ;;
esac
"""


def stack_under_units(datanet, tmp_path, monkeypatch, res):
    """`res`'s primary a, its device up, an xfs on it, its units recorded
    (STACK_SYSTEMCTL stands in for systemctl, for every marsd started
    after) and started by its marsd, four files written there: (a, {file:
    checksum}, the log of what systemctl was asked)."""
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(STACK_SYSTEMCTL)
    systemctl.chmod(0o755)
    monkeypatch.setenv("MARS_SYSTEMCTL", str(systemctl))     # every marsd inherits it
    (a,) = datanet.primary_with_device("a", res=res)
    datanet.mkfs(a, res)
    a.marsadm("set-systemd-unit", res, "test-ct.service", "test-mnt.mount")
    wait_until(lambda: os.path.ismount(a.mnt),
               what="a's marsd starting test-ct.service on the designated primary")
    return a, write_files(a.mnt, 4, 256 * 1024, prefix="before"), a.root / "systemctl.log"
