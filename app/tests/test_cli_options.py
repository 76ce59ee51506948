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
