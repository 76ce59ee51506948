import click
from click.testing import CliRunner

from spectra_cv.cli.options import GreedyCommand, expand_greedy


def test_expand_greedy_rewrites_values_until_next_option():
    args = ["--folds", "3", "4", "5", "--lr", "-1e-3", "--x", "--film", "a", "b"]
    assert expand_greedy(args, {"--folds", "--film"}) == [
        "--folds", "3", "--folds", "4", "--folds", "5", "--lr", "-1e-3", "--x", "--film", "a", "--film", "b",
    ]


def test_greedy_command_parses_runbook_style_lists():
    @click.command(cls=GreedyCommand, greedy=("folds",))
    @click.option("--folds", multiple=True, type=int)
    @click.option("--epochs", type=int, default=1)
    def cmd(folds, epochs):
        click.echo(f"{list(folds)} {epochs}")

    result = CliRunner().invoke(cmd, ["--folds", "3", "4", "5", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "[3, 4, 5] 2"


def test_a_defect_is_one_paragraph_and_its_traceback_comes_with_v(monkeypatch):
    """An exception no layer names (a defect of spectra-cv) ends as one error paragraph that says so and
    how to get the traceback; with -v the traceback itself is raised."""
    from spectra_cv.cli import main
    from spectra_cv.cli import status as status_cmd

    def broken(**kwargs):
        raise KeyError("x")

    monkeypatch.setattr(status_cmd.status, "callback", broken)
    out = CliRunner().invoke(main, ["status"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert out.output.startswith("Error: unexpected KeyError: 'x'. This is a defect of spectra-cv") and "-v" in out.output
    out = CliRunner().invoke(main, ["-v", "status"])
    assert isinstance(out.exception, KeyError)


def test_every_long_option_takes_dashes_or_underscores_and_multi_values_alike(tmp_path):
    """--no-ema as --no_ema, --run_root as --run-root, in every command; status --folds 1 2 as cv's."""
    from spectra_cv.cli import main
    from spectra_cv.cli.options import respell

    known = {"--no_ema", "--ema", "--run-root", "--folds"}
    assert respell(["--no-ema", "--run_root=x", "--folds", "1", "--unknown-flag"], known) == \
        ["--no_ema", "--run-root=x", "--folds", "1", "--unknown-flag"]
    out = CliRunner().invoke(main, ["status", "--run_root", str(tmp_path), "--folds", "1", "2"])
    assert "No such option" not in out.output and "unexpected extra argument" not in out.output, out.output
    out = CliRunner().invoke(main, ["fold", "--fold", "1", "--set", "d_modle=3", "--run-root", str(tmp_path)])
    assert out.exit_code == 1 and "unknown flag 'd_modle'; did you mean d_model?" in out.output
    assert len(out.output) < 300  # one line, not every flag there is


def test_train_switches_take_both_spellings():
    from spectra_cv.cli.train import train

    for spelled in ("--no-ema", "--no_ema"):
        ctx = train.make_context("train", ["--train_dir", "a", "--val_dir", "b", "--checkpoint_dir", "c", spelled])
        assert ctx.params["ema"] is False
