"""``spectra-cv config show``: the run config that ``fold``/``cv``/``slurm submit`` would use, as a file."""

from __future__ import annotations

import click

from spectra_cv.cli import CONTEXT_SETTINGS as CONTEXT
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.cli.run_options import RunOptions, run_options


@click.group(context_settings=CONTEXT)
def config() -> None:
    """Run config files (TOML): print the settings a command would run with, or a preset to copy."""


@config.command("show", cls=GreedyCommand, context_settings=CONTEXT)
@run_options
def show(opts: RunOptions) -> None:
    """Print the resolved run config as a config file, each value not the preset's marked with where it
    came from (the config file, --set, an option). Takes the options of fold and cv, so

        spectra-cv config show --preset cpu_quick > my.toml     # a preset, every setting, to edit
        spectra-cv config show --config my.toml --epochs 5     # what `cv --config my.toml --epochs 5` runs
    """
    from spectra_cv.config_files import RUN_KEYS, config_text, toml_value
    from spectra_cv.train.presets import preset as preset_config

    preset, values, _ = opts.resolved()
    cfg, base = opts.config(), preset_config(preset)
    sources = {name: f"from {where}" for name, (_, where) in values.items()
               if _setting(cfg, name) != _setting(base, name)}  # both typed configs: 0.001 == 1e-3
    text = config_text(cfg, sources, header=(
        f"spectra-cv run config (resolved): preset {preset}, config hash {cfg.hash()[:12]}\n"
        "Values marked '# from …' are not the preset's; the others are."))
    run = {key: getattr(opts, key) for key in RUN_KEYS if getattr(opts, key) is not None}
    text += "\n[run]\n" + "".join(f"{key} = {toml_value(str(v) if key != 'infer_batch_size' else v)}\n"
                                  for key, v in run.items())
    click.echo(text, nl=False)


def _setting(cfg: object, name: str) -> object:
    from spectra_cv.train.flags import flags

    return getattr(getattr(cfg, flags()[name].section), name)

