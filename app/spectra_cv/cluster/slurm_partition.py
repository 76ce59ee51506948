"""What a Slurm partition offers (``sinfo``), and why a fold task's request could never run there.

Slurm accepts an array whose tasks ask for more than any node of the partition has and leaves it
PENDING for ever (reason ``PartitionConfig``), or refuses it with sbatch's raw "Invalid generic
resource (gres) specification". ``submit`` asks ``sinfo`` first and refuses such a request before
anything is queued, naming the option to change. Where ``sinfo`` cannot say (missing, failing, an
unknown partition), the check is skipped with a log line: Slurm itself has the last word.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from spectra_cv.log import get_logger

log = get_logger("slurm")

_GPU = re.compile(r"^gpu(?::[^:(]+)?:(\d+)")
_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


@dataclass(frozen=True)
class Offer:
    """The most any one node of the partition has."""

    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    state: str
    """``up`` when the partition takes jobs (sinfo's %a)."""


def _gpus(gres: str) -> int:
    """``gpu:a100:4(S:0-1),shard:8`` → 4; ``(null)`` → 0."""
    return sum(int(m.group(1)) for part in gres.split(",") if (m := _GPU.match(part.strip())))


def _number(text: str) -> int:
    digits = re.match(r"\d+", text.strip())
    return int(digits.group(0)) if digits else 0


def parse_sinfo(text: str, partition: str | None) -> Offer | None:
    """``sinfo --noheader --format=%P|%c|%m|%G|%a`` output → the partition's offer (the default
    partition, starred, when ``partition`` is None); None when it is not listed."""
    rows = [line.strip().split("|") for line in text.splitlines() if line.count("|") >= 4]
    name = partition
    if name is None:
        name = next((r[0].rstrip("*") for r in rows if r[0].endswith("*")), None)
    mine = [r for r in rows if r[0].rstrip("*") == name]
    if not mine or name is None:
        return None
    return Offer(partition=name, cpus=max(_number(r[1]) for r in mine), mem_mb=max(_number(r[2]) for r in mine),
                 gpus=max(_gpus(r[3]) for r in mine), state=mine[0][4].strip())


def read_offer(partition: str | None) -> Offer | None:
    """Ask ``sinfo``; None (logged) when it cannot say."""
    try:
        done = subprocess.run(["sinfo", "--noheader", "--format=%P|%c|%m|%G|%a"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("sinfo could not be asked (%s); the request is not checked against the partition", exc)
        return None
    if done.returncode != 0:
        log.info("sinfo failed (%s); the request is not checked against the partition", done.stderr.strip())
        return None
    offer = parse_sinfo(done.stdout, partition)
    if offer is None:
        log.info("sinfo does not list partition %s; the request is not checked against it", partition or "(default)")
    return offer


def mem_mb(mem: str) -> int:
    """Slurm's ``--mem`` (``32G``, ``64000``: MB) in MB."""
    unit = mem[-1].upper() if mem[-1].isalpha() else "M"
    return int(float(mem.rstrip("KMGTkmgt")) * _MEM_UNITS[unit])


def request_problems(offer: Offer, cpus: int, gpus: int, mem: str | None) -> list[str]:
    """Why a fold task asking ``cpus``, ``gpus`` and ``mem`` could never start on ``offer``'s nodes,
    each with the option that fixes it."""
    where = f"partition {offer.partition}"
    problems = []
    if gpus > offer.gpus == 0:
        problems.append(f"each fold asks for {gpus} GPU(s) but no node of {where} has any: pass --gpus-per-fold 0 "
                        "(the folds run on the CPU) or choose a GPU partition (--partition …)")
    elif gpus > offer.gpus:
        problems.append(f"each fold asks for {gpus} GPU(s) but no node of {where} has more than {offer.gpus}: "
                        f"pass --gpus-per-fold {offer.gpus} or fewer")
    if cpus > offer.cpus:
        problems.append(f"each fold asks for {cpus} CPUs but the nodes of {where} have at most {offer.cpus}: "
                        f"pass --cpus-per-fold {offer.cpus} or fewer")
    if mem is not None and offer.mem_mb and mem_mb(mem) > offer.mem_mb:
        problems.append(f"each fold asks for --mem {mem} but the nodes of {where} have at most {offer.mem_mb} MB: "
                        f"pass --mem {offer.mem_mb // 1024}G or less")
    if offer.state not in ("up", ""):
        problems.append(f"{where} is {offer.state}, not up: it starts no job now (choose another with --partition)")
    return problems
