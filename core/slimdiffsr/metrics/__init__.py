"""Evaluation metrics as pure functions on arrays (no engine imports, no downloads).

- ``psnr_ssim``: PSNR/SSIM on Y of YCbCr with a border crop (BasicSR / pyiqa definitions), with
  ``psnr_torch``, the torch twin training validation uses;
- ``iqa``: LPIPS, DISTS, NIQE and optional pyiqa networks, weights from the local folder
  (``slimdiffsr.weights``);
- ``rs``: consistency with the LR input, spectral angle, seams, detail (hallucination) scores.

Submodules are imported on use so that ``psnr_ssim`` and ``rs`` stay numpy-only.
"""
