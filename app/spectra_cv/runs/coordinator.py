"""The coordinator: the only writer of the audit logs and of ``fold_summary.csv``.

Folds emit events (``logs/Track_H_fold_##/events.jsonl``); the coordinator renders them:

* audit log — one line ``<event time> | <message>`` per event with a message, in event order.
  A sync appends only the lines the file lacks. The lines already there must be exactly the
  first lines of the rendering (a torn last line from a crash mid-append is cut off first), so a
  coordinator killed at any point and restarted neither repeats nor loses a line. Anything else
  (an edited log) is refused with a pointer to ``--rebuild``.
* summary — one row per fold (``runs.summary``), computed from that fold's events and whether a
  process holds its lock (a run without an outcome whose lock is free shows as ``interrupted``),
  written whole, atomically, when it changes.

The audit log is a pure function of the events, and so is the summary when no fold is at work, so
``rebuild`` regenerates both byte for byte. Two locks (``runs.locks``: flock, or lease files where
flock is not coherent across hosts): every pass holds the write lock, so passes never overlap; a following
coordinator (``--follow``, or ``cv``) also holds the follower lock for its lifetime. A fold
process syncs once itself on the way out unless a follower exists (so ``spectra-cv fold`` alone
leaves a complete audit log). A fold whose files cannot be read or reconciled is reported and
skipped; the other folds are still written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from spectra_cv import faults
from spectra_cv import io as sio
from spectra_cv.audit import format_line
from spectra_cv.errors import SpectraCVError
from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.locks import LockBusy, file_lock, is_held
from spectra_cv.runs.summary import render_summary, summary_row

log = get_logger("coordinator")

class CoordinatorError(SpectraCVError):
    """An audit log or summary that does not match the events."""


def _matched(have: list[bytes], want: list[bytes], spare: int) -> int | None:
    """How many of ``want`` (the events' audit lines, in order) the log ``have`` already holds, when
    ``have`` is their first lines with at most ``spare`` others among them (the lines of damaged event
    records); None when it is not (an edited log)."""
    done = extra = 0
    for line in have:
        if done < len(want) and line == want[done]:
            done += 1
        else:
            extra += 1
            if extra > spare:
                return None
    return done


def render_audit(events: list[ev.Event]) -> bytes:
    """The audit log the events describe."""
    return b"".join(sio.encode_text(format_line(e.time, e.message)) for e in events if e.message is not None)


def fold_alive(paths: RunPaths, fold: int) -> bool:
    """Whether a process holds ``fold``'s lock (is working on it) right now."""
    return is_held(paths.fold_lock(fold))


@dataclass(frozen=True)
class SyncResult:
    folds: tuple[int, ...]
    appended: int
    """Audit lines appended in this pass."""
    summary_written: bool
    errors: tuple[str, ...] = ()
    """One message per fold that could not be read or reconciled (it is left as it is)."""


class Coordinator:
    """Renders every fold's events into its audit log and the summary (hold the lock to use it)."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths

    def _events(self) -> tuple[dict[int, list[ev.Event]], dict[int, int], list[str]]:
        """Each fold's readable events, how many records of its file are damaged, and the folds that
        could not be read at all (a damaged record is logged by ``events.read_events`` and left out)."""
        events, damaged, errors = {}, {}, []
        for fold in self.paths.folds_with_events():
            try:
                read = ev.read_event_file(self.paths.events(fold))
            except (SpectraCVError, OSError) as exc:
                errors.append(f"fold {fold}: {exc}")
                continue
            ev.warn_damaged(read)
            events[fold], damaged[fold] = read.events, len(read.damaged)
        return events, damaged, errors

    def _append_audit(self, fold: int, events: list[ev.Event], damaged: int = 0) -> int:
        """Append the audit lines the log lacks. Lines of damaged event records (``damaged`` of them)
        may stand in the log without an event to match: they are the audit trail and stay."""
        path = self.paths.audit_log(fold)
        want = render_audit(events).splitlines(keepends=True)
        if sio.cut_torn_tail(path):
            log.warning("%s: cut a torn last line left by an interrupted append", path)
        whole = path.read_bytes().splitlines(keepends=True) if path.exists() else []
        done = _matched(whole, want, damaged)
        if done is None and whole[:len(want)] == want:
            raise CoordinatorError(
                f"{self.paths.events(fold)}: holds {len(want)} audited record(s) but {path.name} has "
                f"{len(whole) - len(want)} line(s) after them: the event file lost its end (cut short, or "
                "restored from an older copy). The audit log is left as it is. Restore events.jsonl from a "
                "backup; or run `spectra-cv coordinator --rebuild` (it keeps this audit log beside the new one) "
                "and rerun the fold, which resumes from what its events still record"
            )
        if done is None:
            raise CoordinatorError(
                f"{path}: its lines are not the ones fold {fold}'s events describe (edited by hand, or "
                f"written by another program); run `spectra-cv coordinator --rebuild` to regenerate it"
            )
        missing = want[done:]
        if not missing:
            return 0
        path.parent.mkdir(parents=True, exist_ok=True)
        for i, line in enumerate(missing):
            if i == 1:
                faults.point("coordinator_mid_append")
            sio.append_durably(path, line)  # line by line: a crash leaves whole lines (or one torn tail)
        return len(missing)

    def _rows(self, all_events: dict[int, list[ev.Event]]) -> list[dict[str, Any]]:
        rows = []
        for fold, events in sorted(all_events.items()):
            alive = True
            if ev.fold_status(events) == "running" and not fold_alive(self.paths, fold):
                # free lock: re-read, in case the fold ended between the read and the probe
                events = ev.read_events(self.paths.events(fold))
                alive = False
            rows.append(summary_row(fold, events, alive=alive))
        return rows

    def _write_summary(self, all_events: dict[int, list[ev.Event]]) -> bool:
        blob = render_summary(self._rows(all_events))
        path = self.paths.summary_csv
        if path.exists() and path.read_bytes() == blob:
            return False
        sio.atomic_write_bytes(path, blob)
        return True

    def sync(self) -> SyncResult:
        """Append what the audit logs lack and rewrite the summary if it changed (one locked pass)."""
        with write_lock(self.paths):
            all_events, damaged, errors = self._events()
            appended = 0
            for fold, events in sorted(all_events.items()):
                try:
                    appended += self._append_audit(fold, events, damaged[fold])
                except (SpectraCVError, OSError) as exc:
                    errors.append(f"fold {fold}: {exc}")
            written = self._write_summary(all_events) if all_events else False
        for error in errors:
            log.error("coordinator: %s (left as it is; the other folds are written)", error)
        if appended or written:
            log.info("synced folds %s: %d audit line(s) appended%s", sorted(all_events), appended,
                     ", summary updated" if written else "")
        return SyncResult(folds=tuple(sorted(all_events)), appended=appended, summary_written=written,
                          errors=tuple(errors))

    def rebuild(self) -> SyncResult:
        """Regenerate every audit log and the summary from the events (atomic whole-file writes)."""
        with write_lock(self.paths):
            all_events, _, errors = self._events()
            lines = 0
            for fold, events in all_events.items():
                blob = render_audit(events)
                self._keep_old_log(fold, blob)
                sio.atomic_write_bytes(self.paths.audit_log(fold), blob)
                lines += blob.count(b"\n")
            written = self._write_summary(all_events) if all_events else False
        for error in errors:
            log.error("coordinator: %s (not rebuilt)", error)
        log.info("rebuilt %d audit log(s) (%d lines) and the summary from the events", len(all_events), lines)
        return SyncResult(folds=tuple(sorted(all_events)), appended=lines, summary_written=written,
                          errors=tuple(errors))

    def _keep_old_log(self, fold: int, blob: bytes) -> None:
        """An audit log that differs from its rebuild is kept beside it (``<name>.before-rebuild-<UTC
        time>``): lines of damaged events, or hand edits, are part of the trail and never lost."""
        path = self.paths.audit_log(fold)
        if path.exists() and path.read_bytes() != blob:
            kept = path.with_name(f"{path.name}.before-rebuild-{ev.now_iso().replace(':', '')}")
            sio.atomic_write_bytes(kept, path.read_bytes())
            log.warning("%s differs from its events' rendering; the old log is kept as %s", path, kept.name)

    def follow(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Sync every ``interval`` seconds until ``stop`` is set, then once more. A failed pass is
        logged and the next one tries again: the follower never dies quietly."""
        while not stop.wait(interval):
            self._pass()
        self._pass()

    def _pass(self) -> None:
        try:
            self.sync()
        except Exception as exc:  # noqa: BLE001 - keep following; the error is in the log
            log.error("coordinator pass failed (%s: %s); the next pass retries", type(exc).__name__, exc)
            log.debug("coordinator pass failed", exc_info=True)


def write_lock(paths: RunPaths):  # noqa: ANN201 - a context manager
    """The lock every pass holds (blocking: passes queue up, they never overlap)."""
    return file_lock(paths.coordinator_lock, "the coordinator write lock", blocking=True)


def follower(paths: RunPaths):  # noqa: ANN201 - a context manager
    """Held for its lifetime by a following coordinator; LockBusy when one already follows."""
    return file_lock(paths.follower_lock, "a following coordinator of this run root")


def sync_if_free(paths: RunPaths) -> SyncResult | None:
    """One sync unless a following coordinator exists (it does the work then); never raises LockBusy.
    Nothing at all (not even a lock file) when no fold has events yet."""
    if not paths.folds_with_events():
        return None
    try:
        with follower(paths):
            pass
    except LockBusy:
        log.info("a coordinator is following this run; it writes the audit log and summary")
        return None
    return Coordinator(paths).sync()
