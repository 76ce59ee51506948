import json

import numpy as np
import pandas as pd
import pytest

from spectra_cv.errors import StorageError

from spectra_cv import io


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    io.atomic_write_json(target, {"a": 1})
    io.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "a.txt"
    io.atomic_write_text(target, "old")

    def boom(handle):
        handle.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_npy_npz_csv_roundtrip(tmp_path):
    arr = np.arange(5, dtype=np.float32)
    io.atomic_save_npy(tmp_path / "x_denoised.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "x_denoised.npy"), arr)
    io.atomic_save_npz(tmp_path / "s.npz", weights=arr)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npz")["weights"], arr)
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    io.atomic_write_csv(tmp_path / "f.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "f.csv"), frame)


def test_atomic_write_uses_umask_mode_not_0600(tmp_path):
    import os
    old = os.umask(0o022)
    try:
        path = io.atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_staged_directory_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "out"
    with io.staged_directory(final) as stage:
        io.atomic_write_text(stage / "a" / "x.txt", "1", durable=False)
        assert not final.exists()
    assert (final / "a" / "x.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with io.staged_directory(tmp_path / "broken") as stage:
            io.atomic_write_text(stage / "y.txt", "2", durable=False)
            raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(FileExistsError):
        with io.staged_directory(final):
            pass
    with io.staged_directory(final, replace=True) as stage:
        io.atomic_write_text(stage / "z.txt", "3", durable=False)
    assert sorted(p.name for p in final.iterdir()) == ["z.txt"]


def test_append_durably_undoes_a_failed_write(tmp_path, monkeypatch):
    import os

    from spectra_cv import io as sio

    path = tmp_path / "log"
    sio.append_durably(path, b"one\n")
    real_write = os.write
    calls = []

    def short_then_full_disk(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:3]))  # a short write…
        raise OSError(28, "No space left on device")  # …then the disk is full

    monkeypatch.setattr(os, "write", short_then_full_disk)
    with pytest.raises(StorageError, match=rf"could not append to {path}: No space left on device. The file system is full"):
        sio.append_durably(path, b"two\n")
    monkeypatch.setattr(os, "write", real_write)
    assert path.read_bytes() == b"one\n"  # no half line left for the next append to glue onto
    sio.append_durably(path, b"three\n")
    assert path.read_bytes() == b"one\nthree\n"


def test_a_file_system_fault_is_a_storage_error_naming_the_file_and_the_fix(tmp_path, monkeypatch):
    """Read-only, full or forbidden: the error names the file and what to do; the target is untouched
    and no temp file is left behind."""
    import errno
    import os

    from spectra_cv import io as sio

    target = tmp_path / "metrics.json"
    target.write_text("old\n")
    real_replace = os.replace

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(StorageError, match=rf"could not write {target}: Read-only file system. The file system is "
                                           "mounted read-only: mount it writable, or choose another --run-root"):
        sio.atomic_write_text(target, "new\n")
    monkeypatch.setattr(os, "replace", real_replace)
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    real_mkstemp = sio.tempfile.mkstemp

    def read_only_folder(*args, dir, prefix, **kwargs):  # the temp file beside the target cannot be made
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}abc123.tmp")

    monkeypatch.setattr(sio.tempfile, "mkstemp", read_only_folder)
    with pytest.raises(StorageError, match=rf"could not write {target}: Read-only"):  # the target, not the temp
        sio.atomic_write_text(target, "new\n")
    monkeypatch.setattr(sio.tempfile, "mkstemp", real_mkstemp)


def test_the_cli_turns_any_file_system_fault_into_one_paragraph(tmp_path):
    from click.testing import CliRunner

    from spectra_cv.cli import main

    (tmp_path / "a_file").write_text("x")
    out = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "a_file" / "ds"), "--preset", "tiny"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert out.output.startswith("Error: could not use ") and "a_file: File exists" in out.output
    assert "A file stands where a folder is needed" in out.output
