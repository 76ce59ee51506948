"""Which filesystem a path lives on (``/proc/mounts``), and whether ``flock`` on it is coherent
across hosts: what ``runs.locks`` asks to choose between flock and a lease file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTS_FILE = "/proc/mounts"
ENV_LOCK = "SPECTRA_CV_LOCK"
"""``auto`` (default): flock where it is coherent, else a lease file; ``flock`` or ``lease`` forces one."""
COHERENT, LOCAL_ONLY, UNSUPPORTED = "coherent", "local-only", "unsupported"

_LOCAL_FS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "bcachefs", "f2fs", "jfs", "reiserfs", "tmpfs",
    "ramfs", "overlay", "vfat", "exfat", "ntfs", "ntfs3", "fuseblk", "hfsplus", "apfs", "virtiofs",
    "fuse.grpcfuse", "fakeowner", "9p",
})
_CLUSTER_FS = frozenset({"gpfs", "ceph", "ocfs2", "gfs2"})


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    options: tuple[str, ...] = ()
    source: str = "?"

    def value(self, key: str) -> str | None:
        """The value of option ``key=value`` (None when absent)."""
        return next((o.split("=", 1)[1] for o in self.options if o.startswith(key + "=")), None)

    def describe(self) -> str:
        return f"{self.point} ({self.source}, type {self.fstype}, options {','.join(self.options) or '-'})"


def read_mounts() -> str:
    """The text of /proc/mounts ("" where it cannot be read). Tests replace this function."""
    try:
        return Path(MOUNTS_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)  # \040 is a space


def parse_mounts(text: str) -> list[Mount]:
    """Mounts in /proc/mounts format (``source point type options dump pass``), in mount order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            mounts.append(Mount(point=_unescape(fields[1]), fstype=fields[2],
                                options=tuple(fields[3].split(",")), source=_unescape(fields[0])))
    return mounts


def find_mount(path: str | os.PathLike[str], mounts: str | None = None) -> Mount:
    """The mount holding ``path``: the longest mount point that is a prefix of its real path (the
    last one mounted wins a tie). ``mounts`` is /proc/mounts text (read when None)."""
    target = os.path.realpath(path)
    best = Mount("/", "?")
    for mount in parse_mounts(read_mounts() if mounts is None else mounts):
        inside = target == mount.point or target.startswith(mount.point.rstrip("/") + "/")
        if inside and len(mount.point) >= len(best.point):
            best = mount
    return best


def mount_of(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding ``path`` ("?" if unknown)."""
    mount = find_mount(path)
    return mount.point, mount.fstype


def classify(mount: Mount) -> tuple[str, str]:
    """(``coherent`` | ``local-only`` | ``unsupported``, why) for flock on ``mount``."""
    kind, opts = mount.fstype, set(mount.options)
    if kind in ("nfs", "nfs4"):
        local = mount.value("local_lock")
        if "nolock" in opts or local in ("flock", "all"):
            return LOCAL_ONLY, "NFS mounted with nolock or local_lock=flock|all: flock is local to each host"
        return COHERENT, "NFS with server-side locking: flock is a byte-range lock the server coordinates"
    if kind == "lustre":
        if "flock" in opts:
            return COHERENT, "Lustre mounted with -o flock"
        if "localflock" in opts:
            return LOCAL_ONLY, "Lustre mounted with -o localflock: flock is local to each host"
        return UNSUPPORTED, "Lustre mounted without -o flock: flock fails (ENOSYS)"
    if kind in _CLUSTER_FS:
        return COHERENT, f"{kind}: cluster-wide flock"
    if kind == "beegfs":
        return LOCAL_ONLY, ("BeeGFS: flock is cluster-wide only with tuneUseGlobalFileLocks=true in "
                            f"beegfs-client.conf, which the mount does not show ({ENV_LOCK}=flock if yours has it)")
    if kind in _LOCAL_FS:
        return COHERENT, f"{kind}: a local filesystem (one host)"
    if kind == "?":
        return COHERENT, f"{MOUNTS_FILE} unreadable: assumed a local filesystem"
    return LOCAL_ONLY, f"{kind}: not known to share flock locks between hosts"
