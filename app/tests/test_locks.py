"""Locks on shared filesystems: flock coherence by mount, lease files (two processes, a killed
holder, another host's stale or fresh lease, heartbeat, token-safe release), and clear errors."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectra_cv.errors import ConfigError
from spectra_cv.runs import locks, mounts

APP = Path(__file__).resolve().parents[1]
HOLDER = """
import sys
from spectra_cv.runs.locks import file_lock
with file_lock(sys.argv[1], "fold 1"):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture(autouse=True)
def _auto_mode(monkeypatch):
    monkeypatch.delenv(locks.ENV_LOCK, raising=False)
    monkeypatch.delenv(locks.ENV_LEASE_STALE_S, raising=False)
    monkeypatch.setattr(locks, "_warned", set())


def holder(lock: Path) -> subprocess.Popen:
    """Another process holding ``lock`` until its stdin gets a line (same env: same lock mode)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(APP)})
    assert proc.stdout.readline() == "held\n"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=10) == 0


def take(lock: Path, **kwargs: object) -> None:
    """Take the lock and let go at once."""
    with locks.file_lock(lock, "fold 1", **kwargs):
        pass


def fake_lease(lock: Path, age_s: float, host: str = "node-b", **extra: object) -> Path:
    lease = lock.with_name(lock.name + ".lease")
    lease.parent.mkdir(parents=True, exist_ok=True)
    lease.write_text(json.dumps({"host": host, "pid": 4242, "boot_id": "b", "pidns": "pid:[1]", "token": "theirs",
                                 **extra}))
    stamp = time.time() - age_s
    os.utime(lease, (stamp, stamp))
    return lease


# --- detection ---------------------------------------------------------------------------------
@pytest.mark.parametrize("line, kind", [
    ("srv:/export /mnt/run nfs4 rw,vers=4.2,hard,proto=tcp,local_lock=none 0 0", mounts.COHERENT),
    ("srv:/export /mnt/run nfs rw,vers=3,hard,proto=tcp,local_lock=none 0 0", mounts.COHERENT),
    ("srv:/export /mnt/run nfs rw,vers=3,nolock,proto=tcp,local_lock=all 0 0", mounts.LOCAL_ONLY),
    ("srv:/export /mnt/run nfs4 rw,vers=4.1,local_lock=flock 0 0", mounts.LOCAL_ONLY),
    ("10.0.0.1@o2ib:/scratch /mnt/run lustre rw,flock,lazystatfs 0 0", mounts.COHERENT),
    ("10.0.0.1@o2ib:/scratch /mnt/run lustre rw,localflock,lazystatfs 0 0", mounts.LOCAL_ONLY),
    ("10.0.0.1@o2ib:/scratch /mnt/run lustre rw,lazystatfs 0 0", mounts.UNSUPPORTED),
    ("gpfs1 /mnt/run gpfs rw,relatime 0 0", mounts.COHERENT),
    ("10.0.0.2:6789:/ /mnt/run ceph rw,name=cv 0 0", mounts.COHERENT),
    ("beegfs_nodev /mnt/run beegfs rw,cfgFile=/etc/beegfs/beegfs-client.conf 0 0", mounts.LOCAL_ONLY),
    ("/dev/sda1 /mnt/run ext4 rw,relatime 0 0", mounts.COHERENT),
    ("overlay /mnt/run overlay rw,lowerdir=/a,upperdir=/b 0 0", mounts.COHERENT),
    ("sshfs#me@h: /mnt/run fuse.sshfs rw 0 0", mounts.LOCAL_ONLY),
])
def test_flock_coherence_is_classified_from_the_mount(line, kind):
    mount = mounts.find_mount("/mnt/run/logs/fold_01/.fold.lock", mounts=line)
    assert mount.point == "/mnt/run"
    assert mounts.classify(mount)[0] == kind


def test_the_longest_mount_point_holds_the_path_and_escapes_are_decoded():
    table = """/dev/vda / ext4 rw 0 0
srv:/export /shared nfs4 rw,vers=4.2 0 0
srv:/scratch /shared/my\\040runs nfs rw,vers=3,nolock,local_lock=all 0 0
tmpfs /sharedx tmpfs rw 0 0"""
    assert mounts.find_mount("/shared/my runs/logs/x.lock", mounts=table).fstype == "nfs"
    assert mounts.find_mount("/shared/my runs/logs/x.lock", mounts=table).point == "/shared/my runs"
    assert mounts.find_mount("/shared/other/x.lock", mounts=table).fstype == "nfs4"
    assert mounts.find_mount("/sharedx/x.lock", mounts=table).fstype == "tmpfs"  # a prefix of the name is not enough
    assert mounts.find_mount("/elsewhere/x.lock", mounts=table).point == "/"
    later = table + "\nsrv:/other /shared lustre rw,flock 0 0"  # mounted over: the last one wins
    assert mounts.find_mount("/shared/x.lock", mounts=later).fstype == "lustre"


def _mounted_at(monkeypatch, where: Path, fstype: str, options: str) -> None:
    line = f"server:/export {str(where).replace(' ', chr(92) + '040')} {fstype} {options} 0 0"
    monkeypatch.setattr(mounts, "read_mounts", lambda: f"/dev/vda / ext4 rw 0 0\n{line}\n")


def test_auto_uses_a_lease_on_a_local_only_mount_and_flock_on_a_coherent_one(tmp_path, monkeypatch):
    lock = tmp_path / "logs" / ".fold.lock"
    lease = lock.with_name(".fold.lock.lease")
    _mounted_at(monkeypatch, tmp_path, "nfs", "rw,vers=3,nolock,local_lock=all")
    assert locks.lock_method(tmp_path).method == "lease"
    with locks.file_lock(lock, "fold 1"):
        assert json.loads(lease.read_text())["pid"] == os.getpid()
        assert locks.is_held(lock)
    assert not lease.exists() and not locks.is_held(lock)
    _mounted_at(monkeypatch, tmp_path, "nfs4", "rw,vers=4.2,local_lock=none")
    with locks.file_lock(lock, "fold 1"):
        assert not lease.exists() and locks.is_held(lock)


def test_forcing_flock_on_a_local_only_mount_warns_once(tmp_path, monkeypatch, caplog):
    _mounted_at(monkeypatch, tmp_path, "lustre", "rw,localflock")
    monkeypatch.setenv(locks.ENV_LOCK, "flock")
    with caplog.at_level(logging.WARNING, logger="spectra_cv"):
        for _ in range(3):
            with locks.file_lock(tmp_path / "x.lock", "fold 1"):
                assert not (tmp_path / "x.lock.lease").exists()
    warned = [r for r in caplog.records if "two hosts can both hold a lock" in r.getMessage()]
    assert len(warned) == 1 and "localflock" in warned[0].getMessage()


def test_bad_settings_name_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.ENV_LOCK, "fcntl")
    with pytest.raises(ConfigError, match="SPECTRA_CV_LOCK='fcntl'"):
        locks.lock_method(tmp_path)
    monkeypatch.setenv(locks.ENV_LOCK, "lease")
    monkeypatch.setenv(locks.ENV_LEASE_STALE_S, "-3")
    with pytest.raises(ConfigError, match="SPECTRA_CV_LEASE_STALE_S='-3'"):
        take(tmp_path / "x.lock")


# --- two processes -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["flock", "lease"])
def test_a_second_process_waits_for_the_first_to_release(tmp_path, monkeypatch, mode):
    monkeypatch.setenv(locks.ENV_LOCK, mode)
    lock = tmp_path / "logs" / ".fold.lock"
    proc = holder(lock)
    try:
        assert locks.is_held(lock)
        with pytest.raises(locks.LockBusy, match=rf"fold 1 is held by another process \(pid {proc.pid}"):
            take(lock, wait_s=0.2)
    finally:
        release(proc)
    assert not locks.is_held(lock)
    with locks.file_lock(lock, "fold 1"):
        assert locks.is_held(lock)


@pytest.mark.parametrize("theirs, ours", [("lease", "flock"), ("flock", "lease")])
def test_a_lease_holder_and_a_flock_holder_exclude_each_other(tmp_path, monkeypatch, theirs, ours):
    lock = tmp_path / ".fold.lock"
    monkeypatch.setenv(locks.ENV_LOCK, theirs)
    proc = holder(lock)
    try:
        monkeypatch.setenv(locks.ENV_LOCK, ours)
        assert locks.is_held(lock)
        with pytest.raises(locks.LockBusy):
            take(lock)
    finally:
        release(proc)
    with locks.file_lock(lock, "fold 1"):
        pass


def test_a_lease_left_by_a_killed_process_on_this_host_is_broken_at_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(locks.ENV_LOCK, "lease")  # the staleness limit stays 60 s: the dead pid decides
    lock = tmp_path / ".fold.lock"
    proc = holder(lock)
    proc.kill()
    proc.wait(timeout=10)
    lease = lock.with_name(".fold.lock.lease")
    assert json.loads(lease.read_text())["pid"] == proc.pid  # left behind
    assert not locks.is_held(lock)
    with caplog.at_level(logging.WARNING, logger="spectra_cv"), locks.file_lock(lock, "fold 1"):
        assert json.loads(lease.read_text())["pid"] == os.getpid()
    assert f"broke a stale lease of pid {proc.pid}" in caplog.text and "is gone" in caplog.text


def test_another_hosts_lease_is_broken_only_after_the_staleness_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.ENV_LOCK, "lease")
    monkeypatch.setenv(locks.ENV_LEASE_STALE_S, "0.5")
    lock = tmp_path / ".fold.lock"
    lease = fake_lease(lock, age_s=0.0)
    assert locks.is_held(lock)
    with pytest.raises(locks.LockBusy, match=r"pid 4242 on node-b.*goes stale 0.5 s after its last heartbeat"):
        take(lock)
    assert json.loads(lease.read_text())["token"] == "theirs"  # a fresh lease is left alone
    time.sleep(0.7)
    assert not locks.is_held(lock)
    with locks.file_lock(lock, "fold 1"):
        assert json.loads(lease.read_text())["pid"] == os.getpid()
    fake_lease(lock, age_s=0.3, heartbeat_s=1.0)  # a holder that beats every 1 s: stale only after 3 s
    assert locks.is_held(lock)


def test_the_heartbeat_keeps_a_lease_fresh_for_other_hosts(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.ENV_LOCK, "lease")
    monkeypatch.setenv(locks.ENV_LEASE_STALE_S, "0.4")  # heartbeat every 0.1 s
    lock = tmp_path / ".fold.lock"
    lease = lock.with_name(".fold.lock.lease")
    proc = holder(lock)
    # look from another host: another machine, where the holder's side flock (local-only) is not seen
    monkeypatch.setattr(locks, "_machine", lambda: ("node-b", "other-boot", "pid:[1]"))
    monkeypatch.setattr(locks, "_flock_held", lambda path, strict: False)
    try:
        first = lease.stat().st_mtime
        time.sleep(1.0)
        assert lease.stat().st_mtime > first + 0.5 and locks.is_held(lock)
        os.kill(proc.pid, signal.SIGSTOP)  # a holder that stops beating (a hung or cut-off host)
        try:
            time.sleep(0.8)
            assert not locks.is_held(lock)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
    finally:
        release(proc)


def test_a_release_never_removes_someone_elses_lease(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(locks.ENV_LOCK, "lease")
    monkeypatch.setenv(locks.ENV_LEASE_STALE_S, "0.4")
    lock = tmp_path / ".fold.lock"
    lease = lock.with_name(".fold.lock.lease")
    with caplog.at_level(logging.ERROR, logger="spectra_cv"), locks.file_lock(lock, "fold 1"):
        lease.unlink()  # ours was broken (judged stale) and another process took the lock
        fake_lease(lock, age_s=100.0)
        before = lease.stat().st_mtime_ns
        time.sleep(0.35)  # several heartbeats
        assert lease.stat().st_mtime_ns == before  # the heartbeat touches only our own file
    assert json.loads(lease.read_text())["token"] == "theirs"
    assert "lease was broken by another" in caplog.text


def test_a_breaker_puts_back_a_lease_that_is_not_the_one_it_judged_stale(tmp_path):
    lock = tmp_path / ".fold.lock"
    old = locks._look(fake_lease(lock, age_s=100.0))
    lease = fake_lease(lock, age_s=0.0, token="new holder")  # replaced between the look and the break
    assert not locks._remove_if(lease, lambda seen: (seen.ino, seen.mtime_ns) == (old.ino, old.mtime_ns))
    assert json.loads(lease.read_text())["token"] == "new holder"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fold.lock.lease"]


# --- when a method does not work ---------------------------------------------------------------
def _no_flock(fd: int, operation: int) -> None:
    raise OSError(errno.ENOLCK, "No locks available")


def test_auto_falls_back_to_a_lease_where_flock_fails(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(locks.fcntl, "flock", _no_flock)
    lock = tmp_path / ".fold.lock"
    with caplog.at_level(logging.WARNING, logger="spectra_cv"), locks.file_lock(lock, "fold 1"):
        assert lock.with_name(".fold.lock.lease").exists() and locks.is_held(lock)
        with pytest.raises(locks.LockBusy):
            take(lock)
    assert not locks.is_held(lock) and "using lease files there" in caplog.text
    monkeypatch.setenv(locks.ENV_LOCK, "flock")
    with pytest.raises(locks.LockUnsupported, match="does not support file locks.*Unset SPECTRA_CV_LOCK"):
        take(lock)


def test_a_lease_without_hard_links_uses_o_excl(tmp_path, monkeypatch):
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setenv(locks.ENV_LOCK, "lease")
    monkeypatch.setattr(locks.os, "link", no_link)
    lock = tmp_path / ".fold.lock"
    with locks.file_lock(lock, "fold 1"):
        assert json.loads(lock.with_name(".fold.lock.lease").read_text())["pid"] == os.getpid()
        with pytest.raises(locks.LockBusy):
            take(lock)
    assert not locks.is_held(lock)


def test_no_flock_and_no_lease_is_a_clear_error_naming_the_mount(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path: object, flags: int, *args: object) -> int:
        if flags & os.O_EXCL:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    _mounted_at(monkeypatch, tmp_path, "lustre", "rw,lazystatfs")
    monkeypatch.setattr(locks.os, "open", read_only)
    with pytest.raises(locks.LockUnsupported) as err:
        take(tmp_path / ".fold.lock")
    text = str(err.value)
    assert f"on {tmp_path} (server:/export, type lustre, options rw,lazystatfs)" in text
    assert "Read-only file system" in text and "without -o flock" in text
    assert "'-o flock'" in text and "'nolock'" in text and "coherent locks" in text
