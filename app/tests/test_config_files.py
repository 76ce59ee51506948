"""Run config files (``--config run.toml``): the shipped presets, checking, precedence, ``config show``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.config_files import PRESET_DIR, preset_text, read_config_file
from spectra_cv.errors import ConfigError
from spectra_cv.train.flags import build_run_config
from spectra_cv.train.presets import PRESETS, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_the_shipped_preset_files_are_the_presets(name):
    """presets/<name>.toml is what preset_text writes, and read back it is the preset: same config hash."""
    path = PRESET_DIR / f"{name}.toml"
    assert path.read_text() == preset_text(name), f"regenerate {path} with preset_text({name!r})"
    file = read_config_file(path)
    cfg = build_run_config(file.preset, file.settings, film_features=file.film_features or ())
    assert cfg.hash() == preset(name).hash() and cfg.to_dict() == preset(name).to_dict()


def test_a_bad_file_names_every_problem_with_a_did_you_mean(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "cpu_quick"\nmodle = 1\n[train]\nepoch = 3\nd_model = 8\nlr = "fast"\n'
                    '[run]\ndata_rot = "x"\n')
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    for part in ("unknown key 'modle' (did you mean model?)", "[train] epoch: no such setting (did you mean epochs",
                 "[train] d_model: a setting of [model]; move it there", "[train] lr = 'fast': expected float",
                 "[run] data_rot: no such run option (did you mean data_root"):
        assert part in text
    path.write_text("preset = \n")
    with pytest.raises(ConfigError, match="not a TOML config file"):
        read_config_file(path)


def _show(*args: str, env: dict[str, str] | None = None) -> str:
    out = CliRunner().invoke(main, ["config", "show", *args], env=env)
    assert out.exit_code == 0, out.output
    return out.output


def test_options_and_set_override_the_file_and_show_says_where_each_value_came_from(tmp_path, monkeypatch):
    """preset < file < --set < the run options; [run] paths are the file's folder's, and an option or its
    environment variable given wins over them. `config show` prints a file that reproduces the run."""
    monkeypatch.delenv("SPECTRA_CV_DATA_ROOT")
    (tmp_path / "study").mkdir()
    path = tmp_path / "study" / "run.toml"
    path.write_text('preset = "cpu_quick"\n[model]\nd_model = 16\nn_layers = 1\n[train]\nepochs = 7\nlr = 0.002\n'
                    '[run]\ndata_root = "data/spectra_for_fold"\ndevice = "cpu"\ninfer_batch_size = 32\n')
    text = _show("--config", str(path), "--set", "n_layers=3", "--lr", "0.005")
    assert f"d_model = 16  # from {path}" in text and "n_layers = 3  # from --set" in text
    assert f"epochs = 7  # from {path}" in text and "lr = 0.005  # from --lr" in text
    assert "batch_size = 64\n" in text  # the preset's, unmarked
    assert f'data_root = "{tmp_path / "study" / "data" / "spectra_for_fold"}"' in text
    assert 'device = "cpu"' in text and "infer_batch_size = 32" in text
    text = _show("--config", str(path), "--device", "auto", env={"SPECTRA_CV_DATA_ROOT": "elsewhere"})
    assert 'device = "auto"' in text and 'data_root = "elsewhere"' in text
    shown = tmp_path / "shown.toml"
    shown.write_text(text)
    file = read_config_file(shown)  # what show prints is a config file: the same run again
    again = build_run_config(file.preset, file.settings, film_features=file.film_features or ())
    assert f"config hash {again.hash()[:12]}" in text
    assert _show("--preset", "cpu_quick").count("  # from ") == 0


def test_a_fold_runs_from_a_config_file_with_the_hash_it_shows(data, tmp_path, monkeypatch):
    """`spectra-cv fold --config run.toml` (settings and data paths from the file) completes, and its
    run's config hash is the one `config show` gives for the same file."""
    from spectra_cv import paths as run_paths
    from spectra_cv.paths import RunPaths

    for name in (run_paths.ENV_DATA_ROOT, run_paths.ENV_METADATA_DIR, run_paths.ENV_RUN_ROOT):
        monkeypatch.delenv(name)  # the file's [run] paths are used when no option or variable gives them

    path = tmp_path / "run.toml"
    path.write_text('preset = "cpu_quick"\n[model]\nd_model = 8\nn_layers = 1\n[train]\nepochs = 1\n[run]\n'
                    f'data_root = "{data / "spectra_for_fold"}"\nmetadata_dir = "{data / "metadata"}"\n'
                    'run_root = "run"\n')
    out = CliRunner().invoke(main, ["fold", "--fold", "2", "--config", str(path)])
    assert out.exit_code == 0, out.output
    from spectra_cv.runs import events as ev

    start = ev.last_of(ev.read_events(RunPaths(root=tmp_path / "run").events(2)), ev.START).data
    assert start["config"]["model"]["d_model"] == 8 and start["config"]["train"]["epochs"] == 1
    assert f"config hash {start['config_hash'][:12]}" in _show("--config", str(path))
    assert Path(tmp_path / "run" / "checkpoints" / "Track_H_fold_02" / "mamba_tiny_uv_best.pt").is_file()

    # `final --config` with the same file: its [run] paths, and the folds' config checked against it
    other = tmp_path / "other.toml"
    other.write_text(path.read_text().replace("d_model = 8", "d_model = 16"))
    refused = CliRunner().invoke(main, ["final", "--config", str(other)])
    assert refused.exit_code == 3 and "model.d_model 8 → 16" in refused.output, refused.output
    assert not (tmp_path / "run" / "checkpoints" / "final").exists()
    out = CliRunner().invoke(main, ["final", "--config", str(path)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "run" / "checkpoints" / "final").is_dir() and "denoised corpus" in out.output
