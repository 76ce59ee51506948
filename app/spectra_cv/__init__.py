"""spectra-cv: containerised five-fold cross-validation of a Mamba denoiser of UV spectra.

Layers (each imports only those above it): ``data`` → ``folds`` → ``model`` →
``objective``/``metrics`` → ``train``/``denoise`` → ``runs`` → ``cli``.
Importing this package never imports torch, mamba_ssm or triton.
"""

__version__ = "0.1.0"
