"""The training flags come from the config fields: one table for `train`, `--set` and the cluster commands."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.cli.train import train
from spectra_cv.configs import field_docs
from spectra_cv.errors import ConfigError
from spectra_cv.train.flags import SECTIONS, build_run_config, flags, lookup, parse_sets
from spectra_cv.train.presets import recipe

SURFACE = Path(__file__).parent / "cli_surface" / "train_options.txt"

# runbook §8, verbatim (the paths need not exist: only parsing is checked)
RUNBOOK_TRAIN = """
  --model mamba_tiny_uv --train_dir data/spectra_for_fold --val_dir data/spectra_for_fold
  --train_manifest manifests/fold_03/train_manifest.csv --val_manifest manifests/fold_03/val_manifest.csv
  --sequence_length 601 --epochs 200 --early_stop_patience 21 --bs 600 --lr 3e-4 --lr_min 3e-5
  --weight_decay 1e-4 --noise2noise --noise2noise_pairwise --val_noise2noise
  --geometry_film --film_hidden_dim 64
  --film_features cos_theta UVA_total UVB_total UVA_over_UVB P_UVA_mW_cm2 P_UVB_mW_cm2 UVA_norm UVB_norm
  --dose_features_csv data/metadata/dose_features.csv
  --dose_sampling_weights_csv data/metadata/dose_sampling_weights.csv
  --dose_stats_json data/metadata/dose_stats.json --lambda_weights data/spectra_for_fold/lambda_stats.npz
  --dip_loss --dip_weight 1.0 --dip_m 6 --dip_window_half_nm 7.0 --dip_min_area 5e-4
  --dip_w_area 2.5 --dip_w_equivalent_width 1.5 --dip_w_centroid 2.0 --dip_w_depth 0.3
  --dip_underfill_factor 2.0 --dip_detect_sigma_nm 1.0 --baseline local --baseline_guard_nm 10.0
  --derivative_weight 0.3 --deriv_weight_roi 0.6 --deriv_roi_min 320.0 --deriv_roi_max 500.0
  --curvature_weight_roi 0.3 --d_model 384 --n_layers 8 --d_state 16
  --amp --amp_dtype bf16 --ema --ema_decay 0.999 --tta_reverse --cudnn_benchmark
  --log_dir logs/Track_H_fold_03 --checkpoint_dir checkpoints/Track_H_fold_03
  --speed_log_json artifacts/cross_validation/fold_03_speed.json
  --audit_log logs/Track_H_fold_03/auditing_manifest.log
"""


def _options(command) -> list[str]:
    return sorted(o for p in command.params for o in (*p.opts, *p.secondary_opts))


def test_every_config_field_is_a_flag_unless_its_metadata_says_otherwise():
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.metadata.get("flag", True) is False:
                assert f.name not in flags() or flags()[f.name].section != section
            else:
                assert flags()[f.name].section == section
    assert {f.name for f in flags().values() if f.help.startswith("Sets ")} == set()  # every flag documented
    assert lookup("--geometry-film").name == "film" and lookup("bs").name == "batch_size"


def test_help_text_is_the_field_documentation():
    doc = field_docs(SECTIONS["train"])["signal_jitter"]
    assert "smooth random deviation" in doc and "[--signal_jitter]" in doc
    out = CliRunner().invoke(main, ["train", "--help"], terminal_width=200)
    assert out.exit_code == 0 and "Override " not in out.output
    assert "smooth random deviation" in out.output and "Spectra per optimiser step" in out.output


def test_the_cli_surface_is_pinned():
    """Adding, renaming or dropping a flag is a change of the CLI: update cli_surface/train_options.txt with it."""
    assert _options(train) == SURFACE.read_text().split()


def test_the_runbook_train_command_parses_to_its_settings():
    ctx = train.make_context("train", shlex.split(RUNBOOK_TRAIN))
    values = {k: v for k, v in ctx.params.items() if k in flags()}
    cfg = build_run_config(ctx.params["preset_name"] or "recipe", values, model_name=ctx.params["model_name"],
                           film_features=ctx.params["film_features"], lambda_scale=ctx.params["lambda_scale"])
    assert (cfg.model.d_model, cfg.model.n_layers, cfg.model.d_state, cfg.model.film_hidden_dim) == (384, 8, 16, 64)
    assert cfg.model.film and cfg.model.cond_dim == 8 and len(cfg.film_features) == 8
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.early_stop_patience) == (600, 200, 21)
    assert cfg.train.noise2noise_pairwise and cfg.train.amp and cfg.train.tta_reverse and cfg.train.cudnn_benchmark
    assert cfg.objective.dip_weight == 1.0 and cfg.objective.dip_w_equivalent_width == 1.5
    assert ctx.params["audit_log"] == Path("logs/Track_H_fold_03/auditing_manifest.log")


def test_flags_on_the_command_line_and_with_set_give_the_same_config():
    ctx = train.make_context("train", ["--train_dir", "d", "--val_dir", "d", "--checkpoint_dir", "c", "--bs", "32",
                                       "--no-geometry-film", "--d-model", "48", "--prior", "ridge"])
    given = {k: v for k, v in ctx.params.items() if k in flags() and v is not None}
    assert given == {"batch_size": 32, "film": False, "d_model": 48, "prior": "ridge"}
    assert parse_sets(["bs=32", "geometry_film=off", "d-model=48", "--prior=ridge"]) == given
    assert build_run_config("recipe", given) == build_run_config("recipe", parse_sets(["batch_size=32", "film=false",
                                                                                        "d_model=48", "prior=ridge"]))
    assert build_run_config("recipe", given).film_features == ()  # FiLM off drops the features


@pytest.mark.parametrize("item, message", [
    ("d_model=3.5", "d_model takes a int"), ("residual=maybe", "residual is on/off"),
    ("prior=lasso", "prior must be one of none, pca, ridge"), ("d_modle=3", "unknown flag 'd_modle'; did you mean d_model?"),
    ("d_model", "expected FLAG=VALUE"),
])
def test_a_bad_set_names_the_item_and_the_fix(item, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_sets([item])
    assert repr(item) in str(err.value)


def test_every_problem_of_the_three_configs_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        build_run_config("cpu_quick", {"d_model": 0, "dropout": 1.5, "dip_m": 0, "epochs": 0, "bs": 0})
    text = str(err.value)
    for flag in ("--d_model", "--dropout", "--dip_m", "--epochs", "--bs"):
        assert flag in text, text
    assert "2 problems in the model config" in text and "2 problems in the train config" in text


def test_one_from_dict_for_the_three_configs_names_the_source_and_every_problem():
    cfg = recipe()
    for section, cls in SECTIONS.items():
        part = getattr(cfg, section)
        assert cls.from_dict(part.to_dict()) == part
        with pytest.raises(ConfigError, match=rf"ckpt.pt: unknown {cls.LABEL} keys \['typo'\]"):
            cls.from_dict({**part.to_dict(), "typo": 1}, source="ckpt.pt")
    with pytest.raises(ConfigError) as err:
        SECTIONS["model"].from_dict({**cfg.model.to_dict(), "d_model": "384", "prior": "lasso"})
    assert "--d_model must be int" in str(err.value) and "--prior must be one of" in str(err.value)
    assert cls.from_dict({**cfg.train.to_dict(), "epochs": 3}).epochs == 3
