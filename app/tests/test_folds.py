"""Fold manifests: SPEC §2 rotation, folds.json config, leakage proof, file checks, CLI and script."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.errors import DataContractError, FoldError
from spectra_cv.folds import (
    FoldAssignment,
    check_no_leakage,
    generate,
    load_fold_config,
    rotation_assignment,
    split_manifest,
    write_fold_manifests,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_fold_manifests.py"
# t1 as on the real data; t2 listed out of order (the rule sorts); t6 is a 2-sample control.
SAMPLES = {
    "treatment_1": ["A", "B", "C", "E", "H"],
    "treatment_2": ["J", "D", "I", "F", "G"],
    "treatment_6": ["G", "I"],
}
ANGLES = ("6Oclock", "12Oclock")
REPS = 2
ROW_COUNTS = {"train": 2 * 3 * 2 * REPS, "val": 2 * 1 * 2 * REPS, "test": 2 * 1 * 2 * REPS}


def make_dataset(root: Path) -> Path:
    """A tiny manifest (48 rows) with an empty dummy .npy file behind every row."""
    rows = []
    for treatment, letters in SAMPLES.items():
        for letter in letters:
            for angle in ANGLES:
                group = f"{treatment}/sample_{letter}/{angle}"
                for rep in range(REPS):
                    rel = f"{group}/rep_{rep:03d}.npy"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    (root / rel).touch()
                    rows.append([rel, treatment, f"sample_{letter}", angle, group, f"/orig/{rel}.txt"])
    columns = ["relative_path", "treatment", "sample", "angle", "group_id", "source_path"]
    manifest = root / "manifest.csv"
    pd.DataFrame(rows, columns=columns).to_csv(manifest, index=False)
    return manifest


@pytest.fixture
def manifest_path(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data" / "spectra_for_fold")


@pytest.fixture
def manifest_df(manifest_path: Path) -> pd.DataFrame:
    return pd.read_csv(manifest_path, dtype=str, keep_default_na=False)


def write_config(path: Path, fold_entry: dict, fold: str = "1") -> Path:
    path.write_text(json.dumps({"folds": {fold: fold_entry}}))
    return path


def test_rotation_fold1_is_spec_example(manifest_df):
    a = rotation_assignment(manifest_df, 1)
    assert a.roles["train"]["treatment_1"] == ("sample_A", "sample_B", "sample_C")
    assert a.roles["val"]["treatment_1"] == ("sample_E",)
    assert a.roles["test"]["treatment_1"] == ("sample_H",)
    # t2 sorts to D,F,G,I,J regardless of manifest order
    assert a.roles["train"]["treatment_2"] == ("sample_D", "sample_F", "sample_G")
    assert (a.roles["val"]["treatment_2"], a.roles["test"]["treatment_2"]) == (("sample_I",), ("sample_J",))


def test_rotation_fold2_wraps_around(manifest_df):
    a = rotation_assignment(manifest_df, 2)
    assert a.roles["train"]["treatment_1"] == ("sample_B", "sample_C", "sample_E")
    assert (a.roles["val"]["treatment_1"], a.roles["test"]["treatment_1"]) == (("sample_H",), ("sample_A",))
    a5 = rotation_assignment(manifest_df, 5)
    assert a5.roles["train"]["treatment_1"] == ("sample_H", "sample_A", "sample_B")
    assert (a5.roles["val"]["treatment_1"], a5.roles["test"]["treatment_1"]) == (("sample_C",), ("sample_E",))


def test_every_sample_val_once_test_once_train_three_times(manifest_df):
    seen = {role: Counter() for role in ("train", "val", "test")}
    folds = [rotation_assignment(manifest_df, k) for k in range(1, 6)]
    for a in folds:
        for role, by_t in a.roles.items():
            seen[role].update((t, s) for t, samples in by_t.items() for s in samples)
    cv_samples = {(t, f"sample_{s}") for t in ("treatment_1", "treatment_2") for s in SAMPLES[t]}
    assert dict(seen["val"]) == dict.fromkeys(cv_samples, 1)
    assert dict(seen["test"]) == dict.fromkeys(cv_samples, 1)
    assert dict(seen["train"]) == dict.fromkeys(cv_samples, 3)
    for k in range(4):  # fold k's test sample is fold k+1's val sample
        assert folds[k].roles["test"] == folds[k + 1].roles["val"]


def test_control_is_excluded_with_reason(manifest_df, caplog):
    a = rotation_assignment(manifest_df, 3)
    assert set(a.excluded) == {"treatment_6"}
    assert "2 sample(s)" in a.excluded["treatment_6"] and "final all-data model" in a.excluded["treatment_6"]
    assert all("treatment_6" not in by_t for by_t in a.roles.values())


@pytest.mark.parametrize("fold", [0, 6])
def test_fold_out_of_range(manifest_df, fold):
    with pytest.raises(FoldError, match="--fold 1..5"):
        rotation_assignment(manifest_df, fold)


def test_generate_counts_columns_order_record(manifest_path, manifest_df, tmp_path, caplog):
    out = tmp_path / "manifests"
    with caplog.at_level("WARNING", logger="spectra_cv"):
        result = generate(1, manifest_path, out)
    assert "treatment_6 excluded" in caplog.text
    assert result.counts == ROW_COUNTS
    assert {r: p.name for r, p in result.manifests.items()} == {
        r: f"{r}_manifest.csv" for r in ("train", "val", "test")
    }
    written = {}
    for role, path in result.manifests.items():
        assert path.parent == out / "fold_01"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        expected = manifest_df[manifest_df["relative_path"].isin(frame["relative_path"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, expected)  # all columns, input order, identical cells
        written[role] = frame
    assert set(written["test"]["sample"]) == {"sample_H", "sample_J"}
    union = pd.concat(written.values())["relative_path"]
    control = manifest_df.loc[manifest_df["treatment"] == "treatment_6", "relative_path"]
    assert set(union) | set(control) == set(manifest_df["relative_path"]) and union.is_unique
    record = json.loads(result.record.read_text())
    assert record["assignment"]["val"]["treatment_1"] == ["sample_E"]
    assert record["counts"]["train"] == {"rows": 24, "samples": 6, "groups": 12}
    for role, path in result.manifests.items():
        assert record["manifests"][role]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in (out / "fold_01").iterdir()) == [
        "fold.json", "test_manifest.csv", "train_manifest.csv", "val_manifest.csv"
    ]  # no temp files left behind


def test_leaky_config_raises_and_writes_nothing(manifest_path, manifest_df, tmp_path):
    entry = {
        "train": {"treatment_1": ["sample_A", "sample_B", "sample_C"]},
        "val": {"treatment_1": "sample_A"},
        "test": {"treatment_1": "sample_H"},
    }
    config = write_config(tmp_path / "folds.json", entry)
    with pytest.raises(FoldError, match=r"treatment_1/sample_A is in both train and val"):
        generate(1, manifest_path, tmp_path / "manifests", config=config)
    assert not (tmp_path / "manifests").exists()


def test_check_no_leakage_catches_group_and_sample_overlap(manifest_df):
    splits = split_manifest(manifest_df, rotation_assignment(manifest_df, 1))
    check_no_leakage(splits)  # clean split passes
    leaky = dict(splits)
    leaky["val"] = pd.concat([splits["val"], splits["train"].iloc[:1]], ignore_index=True)
    with pytest.raises(FoldError) as err:
        check_no_leakage(leaky)
    message = str(err.value)
    for label in ("relative_path(s) in both train and val", "sample(s) in both", "group_id(s) in both"):
        assert label in message
    # same group in two roles though every file differs: still a leak
    other = splits["test"].copy()
    other["group_id"] = splits["train"]["group_id"].iloc[0]
    with pytest.raises(FoldError, match="group_id"):
        check_no_leakage({"train": splits["train"], "test": other})
    with pytest.raises(FoldError):
        write_fold_manifests(leaky, Path("out"), 1)
    assert not Path("out").exists()


def test_hand_built_assignment_overlap_is_caught(manifest_df):
    a = FoldAssignment(
        fold=1,
        roles={
            "train": {"treatment_1": ("sample_A", "sample_B")},
            "val": {"treatment_1": ("sample_B",)},
            "test": {"treatment_1": ("sample_H",)},
        },
        excluded={},
        source="test",
    )
    with pytest.raises(FoldError, match="no role"):  # C, E of a CV treatment unassigned
        split_manifest(manifest_df, a)


def test_config_assignment_used_and_unlisted_treatments_excluded(manifest_path, manifest_df, tmp_path):
    entry = {
        "train": {"treatment_1": ["sample_H", "sample_E", "sample_A"]},
        "val": {"treatment_1": "sample_B"},
        "test": {"treatment_1": ["sample_C"]},
    }
    config = write_config(tmp_path / "folds.json", entry, fold="01")
    a = load_fold_config(config, 1, manifest_df)
    assert a.roles["test"] == {"treatment_1": ("sample_C",)} and a.source == str(config)
    assert set(a.excluded) == {"treatment_2", "treatment_6"}
    result = generate(1, manifest_path, tmp_path / "m", config=config)
    assert result.counts == {"train": 3 * 2 * REPS, "val": 2 * REPS, "test": 2 * REPS}
    test_rows = pd.read_csv(result.manifests["test"], dtype=str)
    assert set(test_rows["group_id"]) == {"treatment_1/sample_C/6Oclock", "treatment_1/sample_C/12Oclock"}


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda c: c["folds"].pop("1") and c["folds"].update({"2": {}}), r"fold 1 is missing \(folds in the file: 2\)"),
        (lambda c: c["folds"]["1"].pop("test"), "needs the keys train, val, test"),
        (lambda c: c.update({"extra": 1}), "expected exactly"),
        (
            lambda c: c["folds"]["1"]["val"].update({"treatment_1": "sample_Z"}),
            r"val: treatment_1/sample_Z is not in the manifest \(treatment_1 has sample_A, sample_B",
        ),
        (lambda c: c["folds"]["1"]["val"].update({"treatment_9": "sample_A"}), "treatment_9 has no train sample"),
        (lambda c: c["folds"]["1"]["train"].update({"treatment_1": []}), "non-empty list"),
    ],
)
def test_config_errors_name_the_problem(manifest_df, tmp_path, mutate, pattern):
    config = {
        "folds": {
            "1": {
                "train": {"treatment_1": ["sample_A", "sample_B", "sample_C"]},
                "val": {"treatment_1": "sample_E"},
                "test": {"treatment_1": "sample_H"},
            }
        }
    }
    mutate(config)
    path = tmp_path / "folds.json"
    path.write_text(json.dumps(config))
    with pytest.raises(FoldError, match=pattern):
        load_fold_config(path, 1, manifest_df)


def test_missing_file_names_the_row(manifest_path, manifest_df, tmp_path):
    rel = "treatment_2/sample_F/12Oclock/rep_001.npy"
    row = int(manifest_df.index[manifest_df["relative_path"] == rel][0]) + 1  # 1-based, header excluded
    (manifest_path.parent / rel).unlink()
    with pytest.raises(FileNotFoundError) as err:
        generate(1, manifest_path, tmp_path / "m")
    assert isinstance(err.value, DataContractError)
    assert f"row {row}: " in str(err.value) and f"{rel} not found" in str(err.value)
    assert not (tmp_path / "m").exists()
    assert generate(1, manifest_path, tmp_path / "m", check_files=False).counts == ROW_COUNTS


def test_duplicate_rows_rejected(manifest_path, manifest_df, tmp_path):
    pd.concat([manifest_df, manifest_df.iloc[[3]]]).to_csv(manifest_path, index=False)
    with pytest.raises(DataContractError, match=r"rows 4, 49: duplicate relative_path .*rep_001.npy"):
        generate(1, manifest_path, tmp_path / "m")


def test_cli_defaults_follow_runbook_layout(manifest_path, tmp_path):
    # conftest points SPECTRA_CV_DATA_ROOT at tmp_path/data/spectra_for_fold and chdirs to tmp_path
    result = CliRunner().invoke(main, ["manifests", "--fold", "1"])
    assert result.exit_code == 0, result.output
    assert "counts: train=24 val=8 test=8" in result.output
    assert "treatment_1: train sample_A,sample_B,sample_C | val sample_E | test sample_H" in result.output
    assert "EXCLUDED treatment_6" in result.output
    assert (tmp_path / "manifests" / "fold_01" / "val_manifest.csv").is_file()
    bad = CliRunner().invoke(main, ["manifests", "--fold", "1", "--config", "nope.json"])
    assert bad.exit_code == 1 and "nope.json: fold config not found" in bad.output
    assert CliRunner().invoke(main, ["manifests", "--fold", "6"]).exit_code == 2


def test_script_runs_the_runbook_loop_line(manifest_path, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--fold", "4", "--input-manifest", str(manifest_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Generated manifests in " in proc.stdout and "manifests/fold_04 " in proc.stdout
    val = pd.read_csv(tmp_path / "manifests" / "fold_04" / "val_manifest.csv", dtype=str)
    assert set(val["sample"]) == {"sample_B", "sample_F"}  # t1 order[(4+2)%5]=B, t2 order[1]=F


def test_leave_samples_out_config_keeps_the_held_out_samples_out_of_every_fold(manifest_df, tmp_path):
    """The folds.json of a leave-samples-out check: the held-out samples hold no role in any fold and are
    exactly each fold's unseen rows; the rest rotate (with all five kept it is the built-in rotation)."""
    from spectra_cv.folds.manifests import control_rows, leave_samples_out, unseen_rows

    path = tmp_path / "folds.json"
    path.write_text(json.dumps(leave_samples_out(manifest_df, ["treatment_1/sample_H", "treatment_2/sample_D"])))
    for k in range(1, 6):
        a = load_fold_config(path, k, manifest_df)
        held = {("treatment_1", "sample_H"), ("treatment_2", "sample_D")}
        assert not held & set(a.role_of()) and len(a.roles["train"]["treatment_1"]) == 2
        unseen = unseen_rows(manifest_df, a)
        assert set(zip(unseen["treatment"], unseen["sample"])) == held and len(unseen) == 2 * len(ANGLES) * REPS
        assert set(control_rows(manifest_df, a)["treatment"]) == {"treatment_6"}
    path.write_text(json.dumps(leave_samples_out(manifest_df, [])))
    for k in range(1, 6):
        assert load_fold_config(path, k, manifest_df).roles == rotation_assignment(manifest_df, k).roles
        assert unseen_rows(manifest_df, rotation_assignment(manifest_df, k)).empty


@pytest.mark.parametrize("held, words", [
    (["treatment_1/sample_Z"], "not in the manifest (treatment_1 has"),
    (["treatment_1-sample_A"], "expected treatment/sample"),
    (["treatment_6/sample_G"], "not in the cross-validation"),
    (["treatment_1/sample_A", "treatment_1/sample_B", "treatment_1/sample_C"], "hold out at most 2"),
])
def test_leave_samples_out_names_a_sample_it_cannot_hold_out(manifest_df, held, words):
    from spectra_cv.folds.manifests import leave_samples_out

    with pytest.raises(FoldError, match=re.escape(words)):
        leave_samples_out(manifest_df, held)


def test_a_sample_kept_out_must_be_declared_unseen_and_hold_no_role(manifest_df, tmp_path):
    """Leaving a sample out is said in the folds.json ("unseen"), never a silent drop: without it the
    sample is an orphan (an error naming it); listed both in a role and as unseen, it is refused."""
    from spectra_cv.folds.manifests import leave_samples_out

    config = leave_samples_out(manifest_df, ["treatment_1/sample_H"])
    entry = config["folds"]["1"]
    assert entry["unseen"] == {"treatment_1": ["sample_H"]}
    path = tmp_path / "folds.json"
    undeclared = {k: v for k, v in entry.items() if k != "unseen"}
    with pytest.raises(FoldError, match="treatment_1/sample_H .* has no role.*unseen"):
        split_manifest(manifest_df, load_fold_config(write_config(path, undeclared), 1, manifest_df))
    twice = dict(entry, unseen={"treatment_1": ["sample_H", entry["val"]["treatment_1"]]})
    with pytest.raises(FoldError, match="is in both val and unseen"):
        load_fold_config(write_config(path, twice), 1, manifest_df)
    elsewhere = dict(entry, unseen={"treatment_6": ["sample_G"]})
    with pytest.raises(FoldError, match="treatment_6 has no role in this fold"):
        load_fold_config(write_config(path, elsewhere), 1, manifest_df)
    assignment = load_fold_config(write_config(path, entry), 1, manifest_df)
    assert assignment.to_json()["unseen"] == {"treatment_1": ["sample_H"]}
