"""The trainer's validation metrics are the report's: the torch twins equal the NumPy metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectra_cv.device import autocast, resolve_device
from spectra_cv.errors import SpectraCVError
from spectra_cv.metrics import psnr, sam_deg
from spectra_cv.metrics import torch_twin


def test_torch_psnr_and_sam_equal_the_numpy_metrics_including_their_floors():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.05, 0.9, size=(6, 601))
    pred = ref + rng.normal(0, 3e-3, size=ref.shape)
    pred[1] = ref[1]  # identical: the MSE floor (120 dB) and an angle of 0
    pred[2] = 0.0  # a zero spectrum: the SAM floor gives 90°
    pred[3] = 2.0 * ref[3]  # a scaled copy: same angle, lower PSNR
    got_psnr = torch_twin.psnr(torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(ref, dtype=torch.float32))
    got_sam = torch_twin.sam_deg(torch.as_tensor(pred), torch.as_tensor(ref))
    want_psnr = psnr(pred.astype(np.float32), ref.astype(np.float32))
    np.testing.assert_allclose(got_psnr.numpy(), want_psnr, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got_sam.numpy(), sam_deg(pred, ref), rtol=1e-7, atol=1e-5)  # arccos near 1: float rounding
    assert got_psnr[1] == pytest.approx(120.0) and got_sam[2] == pytest.approx(90.0)
    assert got_sam[3] == pytest.approx(0.0, abs=1e-5) and got_psnr.dtype == torch.float64


def test_device_selection_and_autocast():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(SpectraCVError, match="--device cuda:1: CUDA is not available here"):
            resolve_device("cuda:1")
    cpu = torch.device("cpu")
    with autocast(cpu, amp=True, dtype="bf16"):  # autocast is for CUDA only: a no-op on the CPU
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.float32 and not autocast(cpu, amp=True).fast_dtype == torch.float32
