"""Property-based tests of the readers of stored files: any bytes either read as a valid file of
their kind would, or are refused with the project's error (``SpectraCVError``) — never another
exception. Inputs are arbitrary bytes and valid files with bytes flipped, cut or inserted."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectra_cv.data import loaders
from spectra_cv.errors import SpectraCVError
from spectra_cv.runs import events as ev
from spectra_cv.runs.summary import SUMMARY_COLUMNS, read_summary
from spectra_cv.train.loop import load_state

L = 601
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


def _events() -> bytes:
    lines = [ev.Event(seq=i, time="2026-12-06T22:00:0%d" % i, fold=1, type=ev.NOTE, message=f"note {i}",
                      data={"i": i}).to_line() for i in range(3)]
    return b"".join(lines)


VALID = {
    "manifest": b"relative_path,treatment,sample,angle,group_id\nt/s/6Oclock/rep_000.npy,t,s,6Oclock,t/s/6Oclock\n",
    "npy": _npy(np.linspace(0.1, 0.9, L, dtype=np.float32)),
    "events": _events(),
    "summary": (",".join(SUMMARY_COLUMNS) + "\n" + ",".join("1" if c == "fold" else "" for c in SUMMARY_COLUMNS)
                + "\n").encode(),
}


@st.composite
def damaged(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few bytes flipped, a piece cut out, or bytes inserted — or arbitrary bytes."""
    kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "random"]))
    data = bytearray(valid)
    if kind == "random" or not data:
        return draw(st.binary(max_size=3000))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif kind == "cut":
        del data[at:at + draw(st.integers(1, 40))]
    elif kind == "insert":
        data[at:at] = draw(st.binary(min_size=1, max_size=40))
    else:
        del data[at:]
    return bytes(data)


def _either(read, path):
    try:
        return read(path)
    except SpectraCVError:
        return None


@SETTINGS
@given(blob=damaged(VALID["manifest"]))
def test_a_manifest_reads_or_is_refused(tmp_path, blob):
    path = tmp_path / "manifest.csv"
    path.write_bytes(blob)
    frame = _either(loaders.read_manifest, path)
    if frame is not None:
        assert isinstance(frame, pd.DataFrame) and len(frame) >= 1
        assert {"relative_path", "treatment", "sample", "angle", "group_id"} <= set(frame.columns)


@SETTINGS
@given(blob=damaged(VALID["npy"]))
def test_a_spectrum_file_reads_or_is_refused(tmp_path, blob):
    path = tmp_path / "rep_000.npy"
    path.write_bytes(blob)
    values = _either(lambda p: loaders.load_spectrum(p, np.linspace(300, 600, L)), path)
    if values is not None:
        assert values.shape == (L,) and values.dtype == np.float32 and np.isfinite(values).all()


@SETTINGS
@given(blob=damaged(VALID["events"]))
def test_an_event_file_always_reads_keeping_what_is_whole(tmp_path, blob):
    path = tmp_path / "events.jsonl"
    path.write_bytes(blob)
    read = ev.read_event_file(path)  # never raises: damage is reported, not fatal
    seqs = [e.seq for e in read.events]
    assert seqs == sorted(set(seqs))
    for event in read.events:
        assert isinstance(event.data, dict) and isinstance(event.type, str)
        json.dumps(event.data)  # a record as the writer wrote it
    kept = [line for line in blob.split(b"\n")[:-1] if line in VALID["events"].split(b"\n")[:-1]]
    if kept == VALID["events"].split(b"\n")[:-1]:
        assert seqs == [0, 1, 2]  # every original record still whole: all read, garbage around them left out


@SETTINGS
@given(blob=damaged(VALID["summary"]))
def test_a_summary_reads_or_is_refused(tmp_path, blob):
    path = tmp_path / "fold_summary.csv"
    path.write_bytes(blob)
    frame = _either(read_summary, path)
    if frame is not None:
        assert set(SUMMARY_COLUMNS) <= set(frame.columns)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_resumable_state_loads_or_is_refused(tmp_path, data):
    buffer = io.BytesIO()
    torch.save({"config_hash": "h", "model": {}, "optimizer": {}, "ema": None, "generator": torch.zeros(2),
                "torch_rng": torch.zeros(2), "state": {}}, buffer)
    blob = data.draw(damaged(buffer.getvalue()))
    path = tmp_path / "last_state.pt"
    path.write_bytes(blob)
    state = _either(load_state, path)
    if state is not None:
        assert isinstance(state, dict) and "config_hash" in state


def test_the_valid_files_read_as_written(tmp_path):
    """The seeds of the properties above are themselves readable (so the properties test damage)."""
    for name, blob in VALID.items():
        (tmp_path / name).write_bytes(blob)
    assert list(loaders.read_manifest(tmp_path / "manifest")["relative_path"]) == ["t/s/6Oclock/rep_000.npy"]
    assert [e.seq for e in ev.read_events(tmp_path / "events")] == [0, 1, 2]
    assert list(read_summary(tmp_path / "summary")["fold"]) == [1]
    with pytest.raises(SpectraCVError):
        loaders.load_spectrum(tmp_path / "npy", np.linspace(300, 600, L))  # no .npy suffix: refused by name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_model_checkpoint_loads_or_is_refused(tmp_path, data):
    """`denoise`, `report` and a fold read best checkpoints through ``load_model``: a damaged one, a
    text file or an LFS pointer is a ConfigError naming it, never another exception."""
    from spectra_cv.model.checkpoint import LFS_POINTER, load_model, model_state_for_save
    from spectra_cv.model.mamba_uv import MambaUV
    from spectra_cv.train.presets import cpu_quick

    import dataclasses

    cfg = dataclasses.replace(cpu_quick().model, d_model=4, n_layers=1, prior="none", film=False, cond_dim=1)
    buffer = io.BytesIO()
    torch.save(model_state_for_save(MambaUV(cfg)), buffer)
    blob = data.draw(st.one_of(damaged(buffer.getvalue()),
                               st.just(LFS_POINTER + b" spec/v1\noid sha256:abc\nsize 12\n")))
    path = tmp_path / "model_best.pt"
    path.write_bytes(blob)
    loaded = _either(load_model, path)
    if loaded is not None:
        assert isinstance(loaded[0], MambaUV)
    if blob.startswith(LFS_POINTER):
        with pytest.raises(SpectraCVError, match="Git LFS pointer"):
            load_model(path)
