"""``python -m spectra_cv`` runs the same click group as the ``spectra-cv`` console script."""

from spectra_cv.cli import main

if __name__ == "__main__":
    main()
