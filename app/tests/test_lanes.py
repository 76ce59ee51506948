"""One scheduling rule for `cv --parallel/--gpus` and `make cv` (scripts/compose_cv.sh)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from spectra_cv.errors import ConfigError
from spectra_cv.runs.lanes import plan_lanes, shared_gpus

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compose_cv.sh"


def test_folds_go_round_robin_onto_lanes_and_lanes_onto_gpus():
    lanes = plan_lanes([1, 2, 3, 4, 5], 2, ("0", "1"))
    assert [(lane.gpu, lane.folds) for lane in lanes] == [("0", (1, 3, 5)), ("1", (2, 4))]
    assert [lane.folds for lane in plan_lanes([3, 4, 5])] == [(3, 4, 5)]  # one lane by default on the CPU
    assert [lane.gpu for lane in plan_lanes([1, 2, 3], None, ("2", "3", "5", "7"))] == ["2", "3", "5"]
    crowded = plan_lanes([1, 2, 3, 4, 5], 3, ("0", "1"))
    assert [(lane.gpu, lane.folds) for lane in crowded] == [("0", (1, 4)), ("1", (2, 5)), ("0", (3,))]
    assert shared_gpus(crowded) == ["0"] and shared_gpus(lanes) == []
    with pytest.raises(ConfigError, match="--parallel must be >= 1"):
        plan_lanes([1], 0)


@pytest.mark.parametrize("folds, gpus, parallel", [
    ("1 2 3 4 5", "0", None), ("1 2 3 4 5", "0,1", None), ("1 2 3 4 5", "0,1", "3"), ("3 4 5", "0,1,2,3", None),
    ("1 2 3 4 5", "1,3", "5"), ("2 4", "0", "2"),
])
def test_make_cv_lays_folds_out_as_cv_does(folds, gpus, parallel):
    env = {**os.environ, "DRY_RUN": "1", "FOLDS": folds, "GPUS": gpus, "COMPOSE": "false"}
    env.pop("PARALLEL", None)
    if parallel is not None:
        env["PARALLEL"] = parallel
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=True)
    got = sorted(line for line in out.stdout.splitlines() if line.startswith("[cv] fold "))
    lanes = plan_lanes([int(f) for f in folds.split()], int(parallel) if parallel else None, tuple(gpus.split(",")))
    want = sorted(f"[cv] fold {f} on GPU {lane.gpu} (lane {lane.index})" for lane in lanes for f in lane.folds)
    assert got == want
