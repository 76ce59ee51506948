"""The training loop in layers: ``fit`` → ``train_epoch`` / ``evaluate``.

Checkpoints: ``<model>_best.pt`` (the true best by validation SAM, EMA weights preferred) and
``last_state.pt`` (model, EMA, optimiser, RNG, epoch, history) from which a killed run resumes.
Both are written atomically. The speed log is rewritten atomically after every epoch.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spectra_cv import faults, stages
from spectra_cv import io as sio
from spectra_cv.device import autocast
from spectra_cv.errors import ResumeRefused, SpectraCVError
from spectra_cv.log import get_logger
from spectra_cv.metrics import torch_twin as twin
from spectra_cv.paths import LAST_STATE_FILE
from spectra_cv.train import numerics
from spectra_cv.train.config import TrainConfig
from spectra_cv.train.origin import Origin
from spectra_cv.train.progress import EpochProgress, epoch_progress, format_duration
from spectra_cv.train.schedule import Ema, adamw, lr_at
from spectra_cv.train.tensors import DeviceSplit

log = get_logger("train")

LAST_STATE_NAME = LAST_STATE_FILE


class NonFiniteLossError(SpectraCVError):
    """The loss became NaN/inf; the message names the run, epoch and step."""


@dataclass
class FitResult:
    """What a finished (or stopped) run produced."""

    best_path: Path
    best_epoch: int
    best_val: dict[str, float]
    epochs_run: int
    stopped_because: str
    history: list[dict[str, float]] = field(default_factory=list)


def predict(model: nn.Module, split: DeviceSplit, idx: torch.Tensor, device: torch.device, cfg: TrainConfig,
            shift: torch.Tensor | None = None) -> torch.Tensor:
    """Model output (B, L) in float32 for rows ``idx`` of ``split`` (their reflectance + ``shift``, if given)."""
    with autocast(device, cfg.amp, cfg.amp_dtype):
        out = model(split.inputs(idx, shift), split.cond_of(idx))
    return out[:, 0, :].float()


@torch.no_grad()
def validate(
    model: nn.Module, split: DeviceSplit, objective: Callable, device: torch.device, cfg: TrainConfig, batch: int = 512
) -> dict[str, float]:
    """Loss, PSNR and SAM of ``model`` against the LOO means of ``split`` (deterministic)."""
    model.eval()
    total_loss, psnrs, sams = 0.0, [], []
    n = len(split)
    for start in range(0, n, batch):
        idx = torch.arange(start, min(n, start + batch), device=device)
        pred = predict(model, split, idx, device, cfg)
        ref = split.loo[idx]
        loss, _ = objective(pred, ref)
        total_loss += float(loss) * len(idx)
        psnrs.append(twin.psnr(pred, ref))
        sams.append(twin.sam_deg(pred, ref))
    psnr_all, sam_all = torch.cat(psnrs), torch.cat(sams)
    return {
        "loss": total_loss / n,
        "psnr": float(psnr_all.mean()),
        "psnr_std": float(psnr_all.std()) if n > 1 else 0.0,
        "sam": float(sam_all.mean()),
    }


def _save(obj: dict[str, Any], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    sio.atomic_write_bytes(path, buffer.getvalue())


@dataclass
class TrainState:
    """Everything that changes during a run and must survive a kill."""

    epoch: int = 0
    step: int = 0
    best_sam: float = math.inf
    best_epoch: int = 0
    best_val: dict[str, float] = field(default_factory=dict)
    bad_validations: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    speed: list[dict[str, Any]] = field(default_factory=list)
    stopped_because: str = ""
    """Why the run ended ("" while it goes on); kept so a resumed finished run reports the same."""


def train_step(
    model: nn.Module,
    ema: Ema | None,
    optimizer: torch.optim.Optimizer,
    split: DeviceSplit,
    objective: Callable,
    idx: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device,
    *,
    epoch: int,
    lr: float,
    draws: torch.Tensor | None = None,
    params: Sequence[torch.Tensor] | None = None,
    jitter: torch.Tensor | None = None,
    made: MadePairs | None = None,
) -> torch.Tensor:
    """One optimiser step on rows ``idx``; returns the loss (0-d, detached, on the device) without
    waiting for the device. ``draws`` (from ``split.partner_draws``, one per row) pick the partner
    replicates of pairwise Noise2Noise; ``jitter`` (B, L) is a smooth deviation added to the inputs
    and to their targets alike (``--signal_jitter``); ``made`` makes the chosen rows' pairs anew
    (``--residual_transplant``, ``--signal_mix``: see ``made_pairs``); ``epoch`` (1-based) gates the dip
    term's warm-up."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if cfg.noise2noise and cfg.noise2noise_pairwise:
        if draws is None:
            raise ValueError("pairwise Noise2Noise needs the partner draws of the batch")
        target = split.noisy[split.partners(idx, draws)]
    elif cfg.noise2noise:
        target = split.loo[idx]
    else:
        target = split.noisy[idx]
    dip_target = split.loo[idx]
    shift = None
    if made is not None:
        target, dip_target, shift = made_pairs(split, idx, target, made)
    if jitter is not None and cfg.signal_jitter_relative:
        jitter = jitter * dip_target  # relative: scaled by the spectrum's level
    if jitter is not None:
        target, dip_target = target + jitter, dip_target + jitter
        shift = jitter if shift is None else shift + jitter
    pred = predict(model, split, idx, device, cfg, shift=shift)
    # Dips are detected and measured on the group's leave-one-out mean (a clean estimate that
    # excludes the input): on a single noisy partner replicate the dip term prefers noisy output.
    loss, _terms = objective(pred, target, epoch=epoch, dip_target=dip_target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params if params is not None else model.parameters(), cfg.grad_clip)
    optimizer.step()
    if ema is not None:
        ema.update(model)
    return loss.detach()


def keeps(scores: dict[str, float], state: TrainState, lowest: float, tie: float) -> bool:
    """Whether this validation's model replaces the checkpoint kept. ``lowest``: the lowest validation
    SAM before this one. Without ``tie``, a lower SAM than the kept one's; with it, any SAM within
    ``tie`` of the lowest seen (this one included) and either a higher PSNR than the kept one's or a
    kept one no longer within it (``--select_sam_tie``)."""
    if tie <= 0:
        return scores["sam"] < state.best_sam
    floor = min(lowest, scores["sam"]) + tie
    if scores["sam"] > floor:
        return False
    return state.best_sam > floor or scores["psnr"] > state.best_val.get("psnr", -math.inf)


@dataclass(frozen=True)
class MadePairs:
    """Which rows of a batch are made anew, and from what (``--residual_transplant``, ``--signal_mix``)."""

    rows: torch.Tensor
    """(B,) bool: the rows made anew."""
    donors: torch.Tensor
    """(B,) indices: whose residual each made row carries."""
    mates: torch.Tensor | None = None
    """(B,) indices: a spectrum of the same treatment and angle whose LOO mean is mixed in."""
    weights: torch.Tensor | None = None
    """(B,) the mate's weight in the mix."""

    def take(self, positions: torch.Tensor) -> MadePairs:
        """The draws of the spectra at ``positions`` (one batch)."""
        mates = None if self.mates is None else self.mates[positions]
        weights = None if self.weights is None else self.weights[positions]
        return MadePairs(self.rows[positions], self.donors[positions], mates, weights)


def made_pairs(split: DeviceSplit, idx: torch.Tensor, target: torch.Tensor,
               made: MadePairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(target, dip target, input shift) with the made rows' pairs anew: their clean signal is the LOO
    mean of the row's group (mixed with a mate's: (1 − w)·own + w·mate's, under ``--signal_mix``); their
    input is that signal + the residual of spectrum ``donors`` (its reflectance − its LOO mean) × the
    ratio of the signal to the donor's mean; their target is the signal exactly. Other rows keep theirs
    (their shift is 0)."""
    clean = split.loo[idx]
    if made.mates is not None and made.weights is not None:
        w = made.weights.unsqueeze(1)
        clean = (1.0 - w) * clean + w * split.loo[made.mates]
    donor_mean = split.loo[made.donors]
    residual = (split.noisy[made.donors] - donor_mean) * clean / donor_mean.clamp_min(1e-4)
    rows = made.rows.unsqueeze(1)
    shift = torch.where(rows, clean + residual - split.noisy[idx], torch.zeros_like(clean))
    return torch.where(rows, clean, target), torch.where(rows, clean, split.loo[idx]), shift


def made_for_epoch(split: DeviceSplit, cfg: TrainConfig, generator: torch.Generator,
                   device: torch.device) -> MadePairs | None:
    """One epoch's draws of the made pairs, per spectrum of the split (None when both levers are off)."""
    if cfg.residual_transplant <= 0:
        return None
    n, where = len(split), generator.device
    rows = torch.rand(n, generator=generator, device=where) < cfg.residual_transplant
    donors = torch.randint(0, n, (n,), generator=generator, device=where)
    mates = weights = None
    if cfg.signal_mix > 0:
        mates = split.mates(torch.arange(n, device=device), split.partner_draws(n, generator))
        weights = (torch.rand(n, generator=generator, device=where) * cfg.signal_mix).to(device)
    return MadePairs(rows.to(device), donors.to(device), mates, weights)


def train_epoch(
    model: nn.Module,
    ema: Ema | None,
    optimizer: torch.optim.Optimizer,
    split: DeviceSplit,
    objective: Callable,
    state: TrainState,
    cfg: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
    total_steps: int,
    warmup_steps: int,
    run_name: str,
) -> dict[str, float]:
    """One permutation epoch; returns mean train loss (per spectrum seen) and the last lr.

    No step waits for the device: the epoch's order and partner draws go over in one copy each,
    the loss is summed on the device, and a non-finite loss is recorded there and raised once, at
    the end of the epoch, naming the first step it occurred at (that epoch's weights are never saved).
    """
    model.train()
    n = len(split)
    order = torch.randperm(n, generator=generator).to(device)
    draws = split.partner_draws(n, generator) if cfg.noise2noise and cfg.noise2noise_pairwise else None
    normals = None
    if cfg.signal_jitter > 0:  # one (N, L) draw per epoch, copied once; shaped per batch on the device
        normals = torch.randn(n, split.noisy.shape[1], generator=generator, device=generator.device).to(device)
        factor = split.jitter_factor(cfg.signal_jitter, cfg.signal_jitter_length)
    made = made_for_epoch(split, cfg, generator, device)  # which rows are made anew, and from what
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    bad_loss = torch.zeros((), device=device)
    first_step, seen, lr = state.step, 0, cfg.lr
    params = [p for p in model.parameters() if p.requires_grad]
    for start in range(0, n, cfg.batch_size):
        stop = min(n, start + cfg.batch_size)
        lr = lr_at(state.step, total_steps=total_steps, warmup_steps=warmup_steps, lr=cfg.lr, lr_min=cfg.lr_min)
        loss = train_step(model, ema, optimizer, split, objective, order[start:stop], cfg, device,
                          epoch=state.epoch + 1, lr=lr, draws=None if draws is None else draws[start:stop],
                          params=params, jitter=None if normals is None else normals[start:stop] @ factor,
                          made=None if made is None else made.take(order[start:stop]))
        newly_bad = (first_bad < 0) & ~torch.isfinite(loss)
        first_bad = torch.where(newly_bad, torch.full_like(first_bad, state.step), first_bad)
        bad_loss = torch.where(newly_bad, loss.float(), bad_loss)
        loss_sum += loss.double() * (stop - start)
        state.step += 1
        seen += stop - start
    bad_step = int(first_bad)  # the epoch's one wait for the device
    if bad_step >= 0:
        raise NonFiniteLossError(
            f"{run_name}: non-finite loss {float(bad_loss)} at epoch {state.epoch + 1}, step {bad_step} "
            f"(steps {first_step}–{state.step - 1} ran); lower --lr or check the inputs for NaN"
        )
    return {"train_loss": float(loss_sum) / max(1, seen), "lr": lr}


STATE_KEYS = ("config_hash", "model", "optimizer", "ema", "generator", "torch_rng", "state")
"""Keys every resumable state has; ``cuda_rng`` (the device's RNG state) is added on CUDA."""


def load_state(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """``last_state.pt`` read with ``weights_only=True`` (tensors and plain values only: a file that
    would run code when unpickled is refused, not executed); anything else is a named error."""
    fix = (f"it was not written by this trainer (corrupt, or tampered with). Delete {path} (for `train` and "
           "`final`: or rerun with --force) to train from the first epoch, or restore the file")
    damage = sio.zip_damage(path)
    if damage is not None:
        raise SpectraCVError(f"{path}: refused to load the resumable state (damaged: {damage}); {fix}")
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, zip errors …
        raise SpectraCVError(f"{path}: refused to load the resumable state ({type(exc).__name__}: "
                             f"{(str(exc).splitlines()[0] if str(exc) else 'unreadable')[:160]}); {fix}") from exc
    if not isinstance(saved, dict) or any(k not in saved for k in STATE_KEYS):
        found = sorted(saved)[:8] if isinstance(saved, dict) else type(saved).__name__
        raise SpectraCVError(f"{path}: not a resumable training state (keys {found}); {fix}")
    return saved


def _check_resumable(saved: dict[str, Any], path: Path, config_hash: str, origin: Origin | None,
                     run_name: str) -> None:
    """Refuse (``ResumeRefused``) a state written by a run with other settings or other inputs."""
    stored = saved.get("origin")
    if origin is not None:
        changes = origin.changes(stored, saved.get("config_hash"), config_hash)
    elif saved.get("config_hash") != config_hash:
        changes = [f"its settings differ (config hash {str(saved.get('config_hash'))[:12]} ≠ {config_hash[:12]})"]
    else:
        changes = []
    if changes:
        raise ResumeRefused(
            f"{path}: this resumable state belongs to another run: {'; '.join(changes)}. Resuming would hand "
            "back that run's model as this one's. Rerun with --force (or delete the state) to train afresh "
            "from the first epoch, or restore the settings and inputs it was trained with"
        )
    if origin is not None and not isinstance(stored, dict):
        log.warning("%s: %s records its config but not its inputs (an older version wrote it); resuming on the "
                    "config alone", run_name, path)


def fit(
    *,
    model: nn.Module,
    train: DeviceSplit,
    val: DeviceSplit,
    objective: Callable,
    cfg: TrainConfig,
    device: torch.device,
    checkpoint_dir: Path,
    best_name: str,
    make_checkpoint: Callable[[nn.Module, Ema | None, TrainState], dict[str, Any]],
    config_hash: str,
    run_name: str = "run",
    speed_log: Path | None = None,
    history_csv: Path | None = None,
    audit: Callable[[str], None] = lambda message: None,
    on_resume: Callable[[int, Path], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    origin: Origin | None = None,
    force: bool = False,
) -> FitResult:
    """Train with early stopping on validation SAM; resume from ``last_state.pt`` when it matches.

    ``origin`` (the run's config and inputs) is stored with the state; a state whose config hash or
    inputs differ from this run's is refused (``ResumeRefused``, naming what changed). ``force``
    discards an existing state (logged, audited) and trains from the first epoch.

    ``on_epoch`` receives each finished epoch's figures and progress (``_epoch_event``), before the
    epoch's state is saved: a kill in between repeats the epoch on resume, and its figures supersede.

    ``make_checkpoint(model, ema, state)`` returns the dict stored as the best checkpoint
    (the caller adds config and provenance); the loop stores it atomically.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best_path = checkpoint_dir / best_name
    last_path = checkpoint_dir / LAST_STATE_NAME
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, fused=numerics.fused_optimizer(device))
    ema = Ema(model, cfg.ema_decay) if cfg.ema else None
    generator = torch.Generator().manual_seed(cfg.seed)
    state = TrainState()
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))

    if force and last_path.exists():
        last_path.unlink()
        log.info("%s: --force: discarded the resumable state %s; training from the first epoch", run_name,
                 last_path)
        audit(f"Discarded the resumable state {last_path} (--force); training from the first epoch")
    if last_path.exists():
        saved = load_state(last_path, device)
        _check_resumable(saved, last_path, config_hash, origin, run_name)
        model.load_state_dict(saved["model"], strict=True)
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        generator.set_state(saved["generator"].cpu())
        numerics.restore_rng_state(saved, device)
        state = TrainState(**saved["state"])
        log.info("%s: resuming after epoch %d (step %d) from %s", run_name, state.epoch, state.step, last_path)
        if on_resume is not None:
            on_resume(state.epoch, last_path)
        else:
            audit(f"Resuming training after epoch {state.epoch} from {last_path}")

    stopped = "max epochs"
    if state.epoch >= cfg.epochs or state.history and state.history[-1].get("stop"):
        stopped = state.stopped_because or "already finished"
        log.info("%s: already finished (%d epochs, %s)", run_name, state.epoch, stopped)
    finished = stopped != "max epochs"
    while state.epoch < cfg.epochs and not finished:
        epoch_started = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        stats = train_epoch(
            model, ema, optimizer, train, objective, state, cfg, device, generator, total_steps, warmup_steps, run_name
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s = time.perf_counter() - t0
        state.epoch += 1
        record: dict[str, Any] = {"epoch": state.epoch, **stats}
        stop_now = False
        if state.epoch % cfg.val_every == 0 or state.epoch == cfg.epochs:
            eval_model = ema.module if ema is not None else model
            scores = validate(eval_model, val, objective, device, cfg)
            record.update({f"val_{k}": v for k, v in scores.items()})
            lowest = min((r["val_sam"] for r in state.history if r.get("val_sam") is not None), default=math.inf)
            improvement = lowest - scores["sam"]
            kept = keeps(scores, state, lowest, cfg.select_sam_tie)
            if kept:
                state.best_sam, state.best_epoch, state.best_val = scores["sam"], state.epoch, scores
                _save(make_checkpoint(model, ema, state), best_path)
                log.info("  Saved best checkpoint to %s", best_path)
            # patience: a lower SAM, or (ties broken by PSNR) any checkpoint kept, is progress
            if improvement > cfg.sam_tolerance or (kept and cfg.select_sam_tie > 0):
                state.bad_validations = 0
            else:
                state.bad_validations += 1
                if state.bad_validations >= cfg.early_stop_patience:
                    stopped, stop_now = "early stopping (validation SAM plateau)", True
        state.elapsed_s += time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
        state.speed.append(
            {
                "epoch": state.epoch,
                "samples": len(train),
                "duration_sec": round(train_s, 4),
                "examples_per_sec": round(len(train) / train_s, 2),
                "max_mem_GB": peak,
            }
        )
        if not stop_now and cfg.time_budget_s and state.elapsed_s >= cfg.time_budget_s:
            stopped, stop_now = f"time budget of {cfg.time_budget_s:.0f} s reached", True
        progress = epoch_progress(
            epoch=state.epoch, epochs=cfg.epochs, elapsed_s=state.elapsed_s, time_budget_s=cfg.time_budget_s,
            stopped=stop_now, bad_validations=state.bad_validations, patience=cfg.early_stop_patience,
            val_every=cfg.val_every, validated=state.best_epoch > 0,
        )
        log.info(
            "Epoch %d/%d | train_loss=%.6f | lr=%.3e | val_loss=%s | PSNR=%s dB | SAM=%s° | %.1f spectra/s"
            " | elapsed %s, ETA ≤ %s",
            state.epoch, cfg.epochs, stats["train_loss"], stats["lr"],
            _fmt(record.get("val_loss"), "%.6f"), _fmt(record.get("val_psnr"), "%.3f"),
            _fmt(record.get("val_sam"), "%.4f"), len(train) / train_s,
            format_duration(progress.elapsed_s), format_duration(progress.eta_s),
        )
        record["stop"] = stop_now
        state.history.append(record)
        if on_epoch is not None:
            on_epoch(_epoch_event(record, state, progress, len(train) / train_s))
        if stop_now or state.epoch >= cfg.epochs:
            state.stopped_because = stopped
        faults.point(f"train_epoch_{state.epoch}")  # crash tests: the epoch's work is lost, as in a kill mid-epoch
        _save(
            {
                "config_hash": config_hash,
                "origin": origin.to_dict() if origin is not None else None,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "generator": generator.get_state(),
                **numerics.rng_state(device),
                "state": state.__dict__,
            },
            last_path,
        )
        if speed_log is not None:
            write_speed_log(speed_log, state.speed)
        if history_csv is not None:
            write_history(history_csv, state.history)
        stages.record("epoch", time.perf_counter() - epoch_started)  # training, validation and both saves
        if stop_now:
            break
    if not best_path.exists():
        raise SpectraCVError(f"{run_name}: no validation ran, so no best checkpoint was written; check --val_every")
    log.info("%s: stopped after %d epochs (%s); best epoch %d, val SAM %.4f°", run_name, state.epoch, stopped,
             state.best_epoch, state.best_sam)
    return FitResult(
        best_path=best_path,
        best_epoch=state.best_epoch,
        best_val=state.best_val,
        epochs_run=state.epoch,
        stopped_because=stopped,
        history=state.history,
    )


def _epoch_event(record: dict[str, Any], state: TrainState, progress: EpochProgress,
                 examples_per_sec: float) -> dict[str, Any]:
    """The data of one epoch event: the epoch's figures, the best so far, and the progress."""

    def num(value: Any) -> float | None:
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    return {
        **progress.to_dict(),
        "train_loss": num(record.get("train_loss")), "lr": num(record.get("lr")),
        "val_loss": num(record.get("val_loss")), "val_psnr": num(record.get("val_psnr")),
        "val_sam": num(record.get("val_sam")), "best_epoch": state.best_epoch,
        "best_val_psnr": num(state.best_val.get("psnr")), "best_val_sam": num(state.best_val.get("sam")),
        "examples_per_sec": round(examples_per_sec, 2), "stop": bool(record.get("stop")),
    }


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern % value


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Per-epoch metrics (train loss, lr, validation loss/PSNR/SAM) as CSV, rewritten atomically."""
    columns = ["epoch", "train_loss", "lr", "val_loss", "val_psnr", "val_psnr_std", "val_sam", "stop"]
    lines = [",".join(columns)]
    for row in history:
        lines.append(",".join("" if row.get(c) is None else str(row.get(c)) for c in columns))
    sio.atomic_write_text(path, "\n".join(lines) + "\n")


def write_speed_log(path: Path, epochs: list[dict[str, Any]]) -> None:
    """The runbook's speed log (per-epoch rows + summary), rewritten atomically."""
    rates = sorted(e["examples_per_sec"] for e in epochs)
    mems = [e["max_mem_GB"] for e in epochs if e["max_mem_GB"] is not None]
    summary = {
        "median_examples_per_sec": rates[len(rates) // 2] if rates else None,
        "mean_examples_per_sec": sum(rates) / len(rates) if rates else None,
        "max_mem_GB": max(mems) if mems else None,
        "epochs_logged": len(epochs),
    }
    sio.atomic_write_json(path, {"epochs": epochs, "summary": summary})
