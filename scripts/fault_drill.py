#!/usr/bin/env python3
"""Fault drill: every command against damaged files, file-system faults and kills, on tiny data.

    make fault-drill                     # or: .venv/bin/python scripts/fault_drill.py [-k PATTERN]
    .venv/bin/python scripts/fault_drill.py --json drill.json --keep

It builds once a tiny synthetic dataset and a run root with folds 1 and 2 completed (a small model, two
epochs), then runs each case on a fresh copy of that state: a stored file damaged one of three ways
(torn: cut in half; garbage: random bytes in the middle; not UTF-8: a stray byte 0xFF in a line), a
run root that is read-only or on a full file system, an unreadable input, a path that is not valid
UTF-8, or a command killed at a staged swap. It then runs what a user would run next and checks what
a user must be able to count on: no Python traceback, the documented exit code (0 done, 1 failed,
3 refused), the damaged file named in the message, and nothing finished lost or handed back stale.

Read-only and full file systems are made with tmpfs mounts and the permission case runs as the
``nobody`` user: they need root and are skipped (and listed as skipped) otherwise. One line per case
is printed; ``--json`` writes them all. Exit status 1 if any case failed. About five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TINY = ["--preset", "cpu_quick", "--epochs", "2", "--set", "d_model=8", "--set", "n_layers=1"]
TRAIN_TINY = ["--preset", "cpu_quick", "--epochs", "2", "--d_model", "8", "--n_layers", "1"]
TRACEBACK = "Traceback (most recent call last)"
FOLD_DIR = "logs/Track_H_fold_01"
CKPT_DIR = "checkpoints/Track_H_fold_01"
ARTIFACTS = "artifacts/cross_validation"


@dataclass
class Ctx:
    """One case's world: its own copy of the run root (``root``) and of the data (``data``)."""

    root: Path
    data: Path
    env: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def data_args(self) -> list[str]:
        return ["--data-root", str(self.data / "spectra_for_fold"), "--metadata-dir", str(self.data / "metadata")]

    def run(self, *args: str, fault: str | None = None, user: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if fault:
            env["SPECTRA_CV_FAULT"] = fault
        cmd = [sys.executable, "-m", "spectra_cv", *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        return subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, timeout=timeout)


@dataclass
class Case:
    name: str
    command: Callable[[Ctx], subprocess.CompletedProcess]
    rc: tuple[int, ...]
    setup: Callable[[Ctx], None] = lambda ctx: None
    mention: str = ""
    """Text the output must contain (the file it names, the fault)."""
    after: Callable[[Ctx], str | None] = lambda ctx: None
    """Returns what is wrong with the state the command left (None: fine)."""
    needs_root: bool = False


# --- damage --------------------------------------------------------------------------------------

def torn(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(path.name)
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(rng.randrange(256) for _ in range(64))
    path.write_bytes(bytes(data))


def not_utf8(path: Path) -> None:
    data = path.read_bytes()
    mid = data.find(b"\n", len(data) // 3) + 1 or len(data) // 2
    path.write_bytes(data[:mid] + b"\xff" + data[mid:])


DAMAGES = {"torn": torn, "garbage": garbage, "not-utf8": not_utf8}


def one(root: Path, pattern: str) -> Path:
    found = sorted(root.glob(pattern))
    if not found:
        raise FileNotFoundError(f"{root}/{pattern}: nothing to damage")
    return found[0]


# --- checks on the state a command left ------------------------------------------------------

def summary_has_fold1(ctx: Ctx) -> str | None:
    import pandas as pd

    summary = ctx.root / ARTIFACTS / "fold_summary.csv"
    try:
        frame = pd.read_csv(summary)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
        return f"{summary.name} unreadable: {exc}"
    return None if 1 in set(frame["fold"]) else "fold 1's summary row is gone"


def fold1_intact(ctx: Ctx) -> str | None:
    """Fold 1's live result agrees with itself: checkpoint, completion record, denoised record."""
    import hashlib

    ckpt = ctx.root / CKPT_DIR / "mamba_tiny_uv_best.pt"
    record = ctx.root / CKPT_DIR / "fold_complete.json"
    if not ckpt.is_file():
        return "fold 1's checkpoint is gone"
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    try:
        if json.loads(record.read_text()).get("checkpoint_sha256") != sha:
            return "fold 1's completion record does not describe its checkpoint"
    except (OSError, ValueError):
        return "fold 1's completion record is missing or unreadable"
    for split in ("train", "val", "test"):
        rec = ctx.root / "denoised/folds/fold_01" / split / "denoise_record.json"
        try:
            if json.loads(rec.read_text()).get("checkpoint_sha256") != sha:
                return f"{rec.relative_to(ctx.root)} was not made by the live checkpoint (stale)"
        except (OSError, ValueError):
            return f"{rec.relative_to(ctx.root)} missing or unreadable"
    return None


def both(*checks: Callable[[Ctx], str | None]) -> Callable[[Ctx], str | None]:
    def check(ctx: Ctx) -> str | None:
        for c in checks:
            problem = c(ctx)
            if problem:
                return problem
        return None
    return check


def no_leftovers(ctx: Ctx) -> str | None:
    odd = [p for p in ctx.root.rglob("*") if p.name.endswith((".retrain", ".replaced", ".old")) or ".tmp" in p.name]
    return f"leftovers: {[str(p.relative_to(ctx.root)) for p in odd[:3]]}" if odd else None


# --- the cases ---------------------------------------------------------------------------------

def exported_then(damage: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    """Set-up: export the folds to MLflow in the case's own run root, then damage the store."""
    def setup(ctx: Ctx) -> None:
        ctx.run("track", "--tracking", "mlflow")
        damage(ctx)
    return setup


def damage_cases() -> list[Case]:
    """Each stored file type, damaged three ways, then the commands that read it."""
    cases: list[Case] = []
    for how, damage in DAMAGES.items():
        def hit(pattern: str, damage: Callable[[Path], None] = damage) -> Callable[[Ctx], None]:
            return lambda ctx: damage(one(ctx.root, pattern))

        def hit_data(pattern: str, damage: Callable[[Path], None] = damage) -> Callable[[Ctx], None]:
            return lambda ctx: damage(one(ctx.data, pattern))

        cases += [
            # torn: the file lost its end, which no reader of the events alone can see (a torn last line
            # is what a crash mid-append leaves); the coordinator sees the audit log run past them
            Case(f"events/{how}/status", lambda c: c.run("status"), (0,), hit(f"{FOLD_DIR}/events.jsonl"),
                 "" if how == "torn" else "events.jsonl"),
            Case(f"events/{how}/report", lambda c: c.run("report", "--no-plots"), (0,),
                 hit(f"{FOLD_DIR}/events.jsonl"), "" if how == "torn" else "events.jsonl"),
            Case(f"events/{how}/coordinator", lambda c: c.run("coordinator", "--once"), (1,) if how == "torn" else (0,),
                 hit(f"{FOLD_DIR}/events.jsonl"), "events.jsonl", summary_has_fold1),
            Case(f"audit-log/{how}/coordinator-rebuild", lambda c: c.run("coordinator", "--rebuild"), (0,),
                 hit(f"{FOLD_DIR}/auditing_manifest.log"), "auditing_manifest.log",
                 lambda c: None if list((c.root / FOLD_DIR).glob("auditing_manifest.log.before-rebuild-*"))
                 else "the edited audit log was not kept"),
            Case(f"summary/{how}/report", lambda c: c.run("report", "--no-plots"), (0, 1),
                 hit(f"{ARTIFACTS}/fold_summary.csv"), "" if how == "torn" else "fold_summary.csv"),
            Case(f"summary/{how}/coordinator-rebuild", lambda c: c.run("coordinator", "--rebuild"), (0,),
                 hit(f"{ARTIFACTS}/fold_summary.csv"), "", summary_has_fold1),
            Case(f"metrics-json/{how}/report", lambda c: c.run("report", "--no-plots"), (0,),
                 hit(f"{ARTIFACTS}/fold_01_metrics.json"), "fold_01_metrics.json",
                 lambda c: None if "| 2 |" in (c.root / ARTIFACTS / "cv_report.md").read_text()
                 or "fold 2" in (c.root / ARTIFACTS / "cv_report.md").read_text() else "fold 2 is not in the report"),
            Case(f"checkpoint/{how}/denoise",
                 lambda c: c.run("denoise", "--manifest", "manifests/fold_01/test_manifest.csv", "--root_dir",
                                 str(c.data / "spectra_for_fold"), "--checkpoint", f"{CKPT_DIR}/mamba_tiny_uv_best.pt",
                                 "--output_root", "scratch", "--dose_features_csv",
                                 str(c.data / "metadata/dose_features.csv")),
                 (1,), hit(f"{CKPT_DIR}/mamba_tiny_uv_best.pt"), "mamba_tiny_uv_best.pt",
                 lambda c: "denoise wrote outputs" if (c.root / "scratch").exists() else None),
            Case(f"checkpoint/{how}/fold-rerun", lambda c: c.run("fold", "--fold", "1", *TINY, *c.data_args), (0,),
                 hit(f"{CKPT_DIR}/mamba_tiny_uv_best.pt"), "", fold1_intact),
            Case(f"completion-record/{how}/fold-rerun",
                 lambda c: c.run("fold", "--fold", "1", *TINY, *c.data_args), (0,),
                 hit(f"{CKPT_DIR}/fold_complete.json"), "", fold1_intact),
            Case(f"denoise-record/{how}/fold-rerun",
                 lambda c: c.run("fold", "--fold", "1", *TINY, *c.data_args), (0,),
                 hit("denoised/folds/fold_01/test/denoise_record.json"), "", fold1_intact),
            Case(f"fingerprint/{how}/fold-rerun",
                 lambda c: c.run("fold", "--fold", "1", *TINY, *c.data_args), (0, 1, 3),
                 hit(f"{CKPT_DIR}/data_fingerprint.json"), "", fold1_intact),
            Case(f"last-state/{how}/train-resume",
                 lambda c: c.run("train", "--train_dir", str(c.data / "spectra_for_fold"), "--val_dir",
                                 str(c.data / "spectra_for_fold"), "--train_manifest",
                                 "manifests/fold_01/train_manifest.csv", "--val_manifest",
                                 "manifests/fold_01/val_manifest.csv", "--checkpoint_dir", CKPT_DIR,
                                 "--dose_features_csv", str(c.data / "metadata/dose_features.csv"),
                                 "--dose_stats_json", str(c.data / "metadata/dose_stats.json"), "--audit_log",
                                 "scratch/auditing_manifest.log", *TRAIN_TINY),
                 (1, 3), hit(f"{CKPT_DIR}/last_state.pt"), "last_state.pt"),
            Case(f"fold-manifest/{how}/fold-rerun",
                 lambda c: c.run("fold", "--fold", "1", *TINY, *c.data_args), (0, 1, 3),
                 hit("manifests/fold_01/test_manifest.csv"), "", fold1_intact),
            Case(f"data-manifest/{how}/data-check", lambda c: c.run("data", "check", *c.data_args),
                 (0,) if how == "torn" else (1,),
                 hit_data("spectra_for_fold/manifest.csv"), "manifest.csv"),
            # torn: the rows left are a valid smaller dataset (`data check` warns of the spectra no row lists;
            # the report flags the folds that ran on the whole one)
            Case(f"data-manifest/{how}/fold", lambda c: c.run("fold", "--fold", "3", *TINY, *c.data_args),
                 (0,) if how == "torn" else (1,), hit_data("spectra_for_fold/manifest.csv"),
                 "" if how == "torn" else "manifest.csv",
                 lambda c, how=how: None if how == "torn" or not (c.root / "manifests/fold_03").exists()
                 else "fold 3 wrote manifests"),
            Case(f"denoised-spectrum/{how}/evaluate",
                 lambda c: c.run("evaluate", "--manifest", "manifests/fold_01/test_manifest.csv", "--train-manifest",
                                 "manifests/fold_01/train_manifest.csv", "--root-dir", str(c.data / "spectra_for_fold"),
                                 "--denoised-root", "denoised/folds/fold_01/test"),
                 (1,), hit("denoised/folds/fold_01/test/treatment_*/sample_*/*/rep_*_denoised.npy"), "_denoised.npy"),
            Case(f"data-manifest/{how}/manifests",
                 lambda c: c.run("manifests", "--fold", "3", "--input-manifest",
                                 str(c.data / "spectra_for_fold/manifest.csv"), "--output-root", "manifests"),
                 (0,) if how == "torn" else (1,), hit_data("spectra_for_fold/manifest.csv"),
                 "" if how == "torn" else "manifest.csv",
                 lambda c, how=how: None if how == "torn" or not (c.root / "manifests/fold_03").exists()
                 else "manifests were written from a damaged manifest"),
            Case(f"dose-features/{how}/data-check", lambda c: c.run("data", "check", *c.data_args), (1,),
                 hit_data("metadata/dose_features.csv"), "dose_features.csv"),
            Case(f"spectrum/{how}/data-check", lambda c: c.run("data", "check", *c.data_args), (1,),
                 hit_data("spectra_for_fold/treatment_1/sample_*/6Oclock/rep_000.npy"), "rep_000.npy"),
            Case(f"grid/{how}/data-check", lambda c: c.run("data", "check", *c.data_args), (1,),
                 hit_data("spectra_for_fold/wavelength_grid.npy"), "wavelength_grid.npy"),
            # the store is made here: MLflow records its absolute path, and the case works on a copy
            # garbage may land in a free page of the database, where nothing reads it
            Case(f"mlflow-store/{how}/track", lambda c: c.run("track", "--tracking", "mlflow"),
                 (0, 1) if how == "garbage" else (1,),
                 exported_then(hit("tracking/mlflow/mlflow.db")), "" if how == "garbage" else "mlflow.db"),
            Case(f"mlflow-store/{how}/fold", lambda c: c.run("fold", "--fold", "3", *TINY, *c.data_args, "--tracking",
                                                             "mlflow"), (0,),
                 exported_then(hit("tracking/mlflow/mlflow.db")), "" if how == "garbage" else "mlflow.db"),
        ]
    return cases


def _mounted(ctx: Ctx, size: str, fill_to_kib: int | None = None, readonly: bool = False) -> None:
    """Move the case's run root onto its own tmpfs (full: filled to ``fill_to_kib`` KiB free; or read-only)."""
    saved = ctx.root.with_name(ctx.root.name + ".src")
    ctx.root.rename(saved)
    ctx.root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(ctx.root)], check=True)
    shutil.copytree(saved, ctx.root, dirs_exist_ok=True, symlinks=True)
    if fill_to_kib is not None:
        free = shutil.disk_usage(ctx.root).free
        with open(ctx.root / "filler", "wb") as out:
            out.write(b"\0" * max(0, free - fill_to_kib * 1024))
    if readonly:
        subprocess.run(["mount", "-o", "remount,ro", str(ctx.root)], check=True)
    ctx.notes.append("mounted")


def _unmount(ctx: Ctx) -> None:
    if "mounted" in ctx.notes:
        subprocess.run(["umount", "-l", str(ctx.root)], check=False)


def fs_cases() -> list[Case]:
    def ro(ctx: Ctx) -> None:
        _mounted(ctx, "64m", readonly=True)

    def full(ctx: Ctx) -> None:
        _mounted(ctx, "64m", fill_to_kib=48)

    return [
        Case("read-only/status", lambda c: c.run("status"), (0,), ro, needs_root=True),
        Case("read-only/report", lambda c: c.run("report", "--no-plots"), (1,), ro, "read-only", needs_root=True),
        Case("read-only/coordinator", lambda c: c.run("coordinator", "--once"), (0, 1), ro, needs_root=True),
        Case("read-only/fold", lambda c: c.run("fold", "--fold", "3", *TINY, *c.data_args), (1,), ro, "read-only",
             needs_root=True),
        Case("read-only/cv", lambda c: c.run("cv", "--folds", "3", *TINY, *c.data_args), (1,), ro, "read-only",
             needs_root=True),
        Case("full-disk/fold", lambda c: c.run("fold", "--fold", "3", *TINY, *c.data_args), (1,), full,
             "No space left", lambda c: fold1_intact(c), needs_root=True),
        Case("full-disk/report", lambda c: c.run("report", "--no-plots"), (0, 1), full, "", summary_has_fold1,
             needs_root=True),
        Case("full-disk/data-synth", lambda c: c.run("data", "synth", "--preset", "tiny", "new"), (1,), full,
             "No space left", lambda c: "a partial tree was left" if (c.root / "new").exists() else None,
             needs_root=True),
        Case("mistyped-run-root/fold",
             lambda c: c.run("fold", "--fold", "3", *TINY, *c.data_args, "--run-root", str(c.root / "typo/run")),
             (1, 2), mention="typo", after=lambda c: "the mistyped run root was created"
             if (c.root / "typo").exists() else None),
        Case("unreadable-manifest/data-check", lambda c: c.run("data", "check", *c.data_args, user="65534"), (1,),
             lambda c: os.chmod(c.data / "spectra_for_fold/manifest.csv", 0), "manifest.csv", needs_root=True),
        Case("unreadable-dose-features/fold",
             lambda c: c.run("fold", "--fold", "3", *TINY, *c.data_args, user="65534"), (1,),
             lambda c: (_give_to_nobody(c), os.chmod(c.data / "metadata/dose_features.csv", 0)),
             "dose_features.csv", needs_root=True),
        Case("directory-for-file/data-check", lambda c: c.run("data", "check", *c.data_args), (1,),
             lambda c: _replace_with_dir(c.data / "metadata/dose_stats.json"), "dose_stats.json"),
    ]


def _give_to_nobody(ctx: Ctx) -> None:
    for path in (ctx.root, ctx.data):
        subprocess.run(["chown", "-R", "65534:65534", str(path)], check=True)


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def name_kept(ctx: Ctx) -> str | None:
    """The data root's name (not valid UTF-8) stands in the summary and the fold's log as its own bytes."""
    odd = b"d\xe9ta"
    for rel in (f"{ARTIFACTS}/fold_summary.csv", "logs/Track_H_fold_03/train.log"):
        if odd not in (ctx.root / rel).read_bytes():
            return f"{rel} does not hold the data root's name as its bytes"
    return None


def utf8_cases() -> list[Case]:
    def move(ctx: Ctx) -> None:
        odd = ctx.data.with_name(os.fsdecode(b"d\xe9ta"))
        ctx.data.rename(odd)
        ctx.data = odd

    def fold(ctx: Ctx) -> subprocess.CompletedProcess:
        return ctx.run("fold", "--fold", "3", *TINY, *ctx.data_args)

    return [
        Case("non-utf8-path/data-check", lambda c: c.run("data", "check", *c.data_args), (0,), move),
        Case("non-utf8-path/fold", fold, (0,), move, after=name_kept),
        Case("non-utf8-path/report", lambda c: (fold(c), c.run("report", "--no-plots"))[1], (0,), move),
        Case("non-utf8-path/fold-then-status", lambda c: (fold(c), c.run("status"))[1], (0,), move),
    ]


def kill_cases() -> list[Case]:
    def killed_synth_then_again(ctx: Ctx) -> subprocess.CompletedProcess:
        first = ctx.run("data", "synth", "--preset", "tiny", "--force", str(ctx.data), fault="staged_swap")
        if first.returncode != -9:
            raise RuntimeError(f"data synth was not killed at its swap (rc {first.returncode})")
        if not (ctx.data / "spectra_for_fold/manifest.csv").is_file() and not list(ctx.data.parent.glob(".*.old")):
            raise RuntimeError("after the kill neither the old tree nor a kept copy of it is there")
        return ctx.run("data", "synth", "--preset", "tiny", "--force", str(ctx.data))

    def killed_retrain_swap(ctx: Ctx) -> subprocess.CompletedProcess:
        ctx.run("fold", "--fold", "1", *TINY, *ctx.data_args, "--force", fault="swap_midway")
        return ctx.run("fold", "--fold", "1", *TINY, *ctx.data_args, "--force")

    def killed_denoise(ctx: Ctx) -> subprocess.CompletedProcess:
        args = ("denoise", "--manifest", "manifests/fold_01/test_manifest.csv", "--root_dir",
                str(ctx.data / "spectra_for_fold"), "--checkpoint", f"{CKPT_DIR}/mamba_tiny_uv_best.pt",
                "--output_root", "again", "--dose_features_csv", str(ctx.data / "metadata/dose_features.csv"))
        ctx.run(*args, fault="denoise_midway")
        return ctx.run(*args)

    def killed_final(ctx: Ctx) -> subprocess.CompletedProcess:
        ctx.run("final", *ctx.data_args)
        before = sorted((ctx.root / "denoised/final").rglob("*.npy"))
        ctx.run("final", *ctx.data_args, "--force", fault="denoise_midway")
        if sorted((ctx.root / "denoised/final").rglob("*.npy")) != before or \
                not (ctx.root / "denoised/final/denoise_record.json").is_file():
            raise RuntimeError("a final run killed while denoising did not leave the corpus denoised before whole")
        return ctx.run("final", *ctx.data_args)

    def killed_coordinator(ctx: Ctx) -> subprocess.CompletedProcess:
        ctx.run("coordinator", "--rebuild")
        ctx.run("coordinator", "--once", fault="coordinator_mid_append")
        return ctx.run("coordinator", "--once")

    def killed_tensorboard(ctx: Ctx) -> subprocess.CompletedProcess:
        ctx.run("track", "--tracking", "tensorboard")
        ctx.run("track", "--tracking", "tensorboard", fault="staged_swap")
        return ctx.run("track", "--tracking", "tensorboard")

    return [
        Case("kill/data-synth-swap", killed_synth_then_again, (0,), mention="",
             after=lambda c: None if (c.data / "spectra_for_fold/manifest.csv").is_file() else "no data after rerun"),
        Case("kill/fold-retrain-swap", killed_retrain_swap, (0,), after=both(fold1_intact, no_leftovers)),
        Case("kill/denoise-midway", killed_denoise, (0,),
             after=lambda c: None if (c.root / "again/denoise_record.json").is_file() else "no record after rerun"),
        Case("kill/final-denoise", killed_final, (0,),
             after=lambda c: None if (c.root / "artifacts/cross_validation/final_model.json").is_file()
             else "no final record"),
        Case("kill/coordinator-append", killed_coordinator, (0,), after=summary_has_fold1),
        Case("kill/tensorboard-swap", killed_tensorboard, (0,)),
    ]


# --- running ---------------------------------------------------------------------------------

def build_base(work: Path, env: dict[str, str]) -> tuple[Path, Path]:
    data, root = work / "base-data", work / "base-run"
    root.mkdir(parents=True)
    ctx = Ctx(root=root, data=data, env=env)
    for args in (("data", "synth", "--preset", "tiny", str(data)),
                 ("fold", "--fold", "1", *TINY, *ctx.data_args),
                 ("fold", "--fold", "2", *TINY, *ctx.data_args),
                 ("coordinator", "--once"), ("report", "--no-plots")):
        out = ctx.run(*args)
        if out.returncode != 0:
            raise SystemExit(f"building the drill's base state failed: spectra-cv {' '.join(args)}\n"
                             f"{out.stderr.decode(errors='replace')[-2000:]}")
    return data, root


@contextlib.contextmanager
def case_world(work: Path, base_data: Path, base_root: Path, name: str, env: dict[str, str]) -> Iterator[Ctx]:
    here = work / name.replace("/", "_")
    shutil.copytree(base_data, here / "data", symlinks=True)
    shutil.copytree(base_root, here / "run", symlinks=True)
    ctx = Ctx(root=here / "run", data=here / "data", env=env)
    try:
        yield ctx
    finally:
        _unmount(ctx)


def judge(case: Case, ctx: Ctx, out: subprocess.CompletedProcess) -> tuple[str, str]:
    text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
    problems = []
    if TRACEBACK in text:
        problems.append("a traceback")
    if out.returncode not in case.rc:
        problems.append(f"exit {out.returncode}, expected {'/'.join(map(str, case.rc))}")
    if case.mention and case.mention not in text:
        problems.append(f"the output does not name {case.mention!r}")
    after = case.after(ctx)
    if after:
        problems.append(after)
    lines = text.strip().splitlines() or [""]
    said = [line for line in lines if line.startswith("Error") or "WARNING" in line] or lines[-1:]
    return ("; ".join(problems) or "ok"), said[-1][:300]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", default="*", help="Run only the cases whose name matches this glob.")
    parser.add_argument("--json", type=Path, help="Write every case's outcome here.")
    parser.add_argument("--keep", action="store_true", help="Keep the working folder (printed).")
    parser.add_argument("--show", action="store_true", help="Print the whole output of each failed case.")
    opts = parser.parse_args()
    is_root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(prefix="spectra-cv-drill-"))
    # the cases give every path themselves: a SPECTRA_CV_RUN_ROOT (or data root) set here must not
    # point them elsewhere; the scan kernel's cache is kept
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECTRA_CV_") or k == "SPECTRA_CV_KERNEL_CACHE"}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    os.chmod(work, 0o755)
    t0 = time.perf_counter()
    base_data, base_root = build_base(work, env)
    results, failed = [], 0
    for case in damage_cases() + fs_cases() + utf8_cases() + kill_cases():
        if not fnmatch.fnmatch(case.name, opts.k):
            continue
        if case.needs_root and not is_root:
            results.append({"case": case.name, "outcome": "skipped (needs root)"})
            print(f"SKIP {case.name}: needs root", flush=True)
            continue
        started = time.perf_counter()
        with case_world(work, base_data, base_root, case.name, env) as ctx:
            try:
                case.setup(ctx)
                out = case.command(ctx)
                verdict, said = judge(case, ctx, out)
                rc = out.returncode
            except Exception as exc:  # noqa: BLE001 - the drill reports its own breakage as a failed case
                verdict, said, rc = f"the drill itself failed: {exc}", "", None
        ok = verdict == "ok"
        failed += not ok
        results.append({"case": case.name, "outcome": verdict, "exit": rc, "said": said,
                        "seconds": round(time.perf_counter() - started, 1)})
        print(f"{'ok  ' if ok else 'FAIL'} {case.name}: exit {rc}: {said}" + ("" if ok else f"\n     → {verdict}"),
              flush=True)
        if opts.show and not ok and rc is not None:
            print(textwrap.indent((out.stdout + out.stderr).decode(errors="replace")[-4000:], "     | "), flush=True)
    print(f"{len(results)} cases, {failed} failed, {sum('skipped' in str(r['outcome']) for r in results)} skipped "
          f"in {time.perf_counter() - t0:.0f} s")
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    if opts.keep:
        print(f"working folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
