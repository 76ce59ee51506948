"""Fold events: one append-only JSON-lines file per fold, written only by that fold's process.

A fold never writes the audit log or the summary; it emits events, and the coordinator turns
them into both. Each event is one line, written with a single ``write`` on a file opened for
append, then fsync'd: a crash leaves whole lines, or at worst a torn last line without its
newline. Readers ignore a torn tail; the writer cuts it off before its first append (it is the
only writer, so nothing else can be mid-line).

An event: ``{"v": 1, "seq": n, "time": "2026-03-15T19:42:03", "fold": 2, "type": "...",
"message": "Starting fold_02" | null, "data": {...}}``. Events with a ``message`` become audit
lines, stamped with the event's time, so the audit log is a pure function of the events.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spectra_cv.audit import flatten
from spectra_cv.errors import DataContractError
from spectra_cv.io import append_durably, cut_torn_tail
from spectra_cv.log import get_logger

log = get_logger("events")

SCHEMA = 1

# Event types. Stage events mark what the fold pipeline has done, so a rerun resumes after them.
START = "start"  # a new run of the fold (config, provenance)
RESUME = "resume"  # a rerun picking up an unfinished run (no audit line: the log reads as one run)
MANIFESTS = "manifests"
MANIFESTS_DONE = "manifests_done"
SKIP = "skip"
TRAIN = "train"
TRAIN_DONE = "train_done"
EPOCH = "epoch"  # one training epoch's figures and progress (no audit line; status, progress, tracking)
CHECKPOINT = "checkpoint"
INFER = "infer"
INFER_DONE = "infer_done"
EVALUATED = "evaluated"
SWAP = "swap"  # a retrain's staged outputs are being moved over the finished ones (runs.outputs)
COMPLETED = "completed"
FAILED = "failed"
NOTE = "note"  # an audit line with no stage meaning (e.g. the trainer's own messages)


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
"""An event's time: UTC to the second, the audit log's format."""


def now_iso() -> str:
    """UTC now to the second, the audit log's time format."""
    return datetime.now(timezone.utc).strftime(TIME_FORMAT)


def timestamp(stamp: str) -> float:
    """An event time (``2026-03-15T19:42:03``, UTC) as POSIX seconds; ValueError if it is not one."""
    return datetime.strptime(stamp, TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class Event:
    seq: int
    time: str
    fold: int
    type: str
    message: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_line(self) -> bytes:
        payload = {"v": SCHEMA, "seq": self.seq, "time": self.time, "fold": self.fold, "type": self.type,
                   "message": self.message, "data": self.data}
        return (json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def _parse(line: bytes, path: Path, number: int) -> Event:
    try:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise TypeError(f"a JSON {type(raw).__name__}, not an object")
        if raw.get("v") != SCHEMA:
            raise ValueError(f"schema {raw.get('v')!r}, expected {SCHEMA}")
        data = raw.get("data") or {}
        if not isinstance(data, dict):
            raise TypeError("its data is not an object")
        message = raw.get("message")
        timestamp(str(raw["time"]))  # ValueError unless it is an event time
        return Event(seq=int(raw["seq"]), time=str(raw["time"]), fold=int(raw["fold"]), type=str(raw["type"]),
                     message=str(message) if message is not None else None, data=dict(data))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise DataContractError(f"{path}:{number}: not a spectra-cv event ({exc})") from exc


@dataclass(frozen=True)
class EventFile:
    """What one fold's event file holds: its readable events, and the records left out."""

    events: list[Event]
    damaged: tuple[str, ...] = ()
    """``<file>:<line>: <why>`` for each record that could not be read (torn, blank, garbage, wrong
    encoding, out of sequence) or lines lost between two events."""


DAMAGE_FIX = ("the file is written only by the fold process; the other events are used as they are. "
              "`spectra-cv coordinator --rebuild` rewrites the audit log and summary from them, keeping the "
              "old audit log beside it")


def read_event_file(path: str | os.PathLike[str]) -> EventFile:
    """Every readable event in ``path`` in order, and each damaged record (a torn last line, the
    mark of a crash mid-append, is neither); an absent file has none."""
    p = Path(path)
    try:
        blob = p.read_bytes()
    except FileNotFoundError:
        return EventFile([])
    events: list[Event] = []
    damaged: list[str] = []
    skipped = 0  # damaged lines since the last readable event
    for number, line in enumerate(blob.split(b"\n")[:-1], start=1):  # after the last newline: empty or torn
        try:
            event = _parse(line, p, number)
        except DataContractError as exc:
            damaged.append(str(exc))
            skipped += 1
            continue
        expected = events[-1].seq + 1 if events else 0
        if event.seq < expected:
            damaged.append(f"{p}:{number}: event seq {event.seq} repeats or goes back (expected {expected})")
            skipped += 1
            continue
        if event.seq > expected + skipped:
            damaged.append(f"{p}:{number}: event seq {event.seq}, expected {expected} (lines lost before it)")
        events.append(event)
        skipped = 0
    return EventFile(events, tuple(damaged))


_reported: set[str] = set()


def warn_damaged(read: EventFile) -> None:
    """Log each damaged record of ``read`` as a warning naming its file and line (once per process)."""
    for problem in read.damaged:
        if problem not in _reported:
            _reported.add(problem)
            log.warning("%s; left out (%s)", problem, DAMAGE_FIX)


def read_events(path: str | os.PathLike[str]) -> list[Event]:
    """Every readable event in ``path`` (``read_event_file``); each damaged record is logged
    (``warn_damaged``) and left out."""
    read = read_event_file(path)
    warn_damaged(read)
    return read.events


class EventWriter:
    """The single writer of one fold's event file (callers hold the fold lock)."""

    def __init__(self, path: str | os.PathLike[str], fold: int) -> None:
        self.path = Path(path)
        self.fold = fold
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self.events = read_events(self.path)

    def _cut_torn_tail(self) -> None:
        cut = cut_torn_tail(self.path)
        if cut:
            log.warning("%s: dropped a torn last line (%d bytes) left by a crash", self.path, cut)

    def emit(self, type_: str, message: str | None = None, **data: Any) -> Event:
        """Append one event durably and return it; ``message`` becomes an audit line."""
        seq = self.events[-1].seq + 1 if self.events else 0  # after the last readable one, damage or not
        event = Event(seq=seq, time=now_iso(), fold=self.fold, type=type_,
                      message=flatten(message) if message is not None else None, data=data)
        append_durably(self.path, event.to_line())
        self.events.append(event)
        if message is not None:
            log.info("[audit] %s", event.message)
        return event

    def audit(self, message: str) -> None:
        """A free audit line (the trainer's ``audit`` callback)."""
        self.emit(NOTE, message)


def runs_of(events: list[Event]) -> list[list[Event]]:
    """The events split into runs, each beginning with its ``start`` (events before any start are dropped)."""
    runs: list[list[Event]] = []
    for event in events:
        if event.type == START:
            runs.append([event])
        elif runs:
            runs[-1].append(event)
    return runs


def current_run(events: list[Event]) -> list[Event]:
    """The events of the latest run: from the last ``start`` on ([] before any start)."""
    runs = runs_of(events)
    return runs[-1] if runs else []


def last_of(events: list[Event], type_: str, **match: Any) -> Event | None:
    """The last event of ``type_`` whose data contain ``match``."""
    for event in reversed(events):
        if event.type == type_ and all(event.data.get(k) == v for k, v in match.items()):
            return event
    return None


def run_status(run: list[Event]) -> str:
    """``completed``, ``failed``, ``running`` (started, no outcome since) or ``pending`` (no run) of one run."""
    if not run:
        return "pending"
    ends = [e for e in run if e.type in (COMPLETED, FAILED, RESUME)]
    if not ends:
        return "running"
    return {COMPLETED: "completed", FAILED: "failed"}.get(ends[-1].type, "running")


def fold_status(events: list[Event]) -> str:
    """The latest run's status: ``completed``, ``failed``, ``running`` or ``pending``.

    ``running`` only says that the events end without an outcome; whether a process is still at
    work is the fold lock's to say (``runs.coordinator.live_status`` shows a dead one as ``interrupted``).
    """
    return run_status(current_run(events))
