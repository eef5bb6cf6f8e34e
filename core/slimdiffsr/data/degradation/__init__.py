"""Synthetic degradations that turn HR training crops into LR inputs (method.md section 6).

Two presets, both a frozen :class:`DegradationConfig`:

- :meth:`DegradationConfig.realesrgan` reproduces the authors' second-order Real-ESRGAN pipeline
  (blur -> resize -> noise -> JPEG, twice, then a final sinc / resize / JPEG stage and 8-bit
  rounding), for reproducing the paper.
- :meth:`DegradationConfig.rs` is the remote-sensing preset: a sensor-like Gaussian PSF, area
  downsampling (pixel integration), Gaussian read noise plus Poisson shot noise at LR level, no JPEG
  and 12-bit quantisation. JPEG and 8-bit rounding are artefacts that 12-16-bit, usually losslessly
  stored RS products never show, so a model trained on them learns to remove things that are not there.

Every step is one function with a deterministic twin that takes explicit parameters
(``gaussian_noise(x, sigma)``) and a ``random_*`` wrapper that only samples those parameters from a
``torch.Generator`` and calls the twin, so tests can pin each step. All randomness comes from the
generator passed in (never the global RNG): the same seed, device and input give the same output.

Conventions (all functions): images are float tensors of shape (B, C, H, W) with values in [0, 1]
(not the model's [-1, 1]); any number of bands C; noise levels and sigmas are in that [0, 1] unit,
never "in 0-255". Per-sample parameters are 1-D tensors of length B. Random draws happen on the
generator's device; pass a generator on the images' device for speed on GPU.

Modules: ``config`` (settings and presets), ``kernels`` (blur kernels), ``ops`` (the steps),
``pipeline`` (:func:`degrade`), ``draws`` (random draws). The names below are the public face.
"""

from slimdiffsr.data.degradation.config import (
    KERNEL_TYPES,
    RESIZE_MODES,
    BlurConfig,
    DegradationConfig,
    JpegConfig,
    KernelType,
    NoiseConfig,
    Range,
    ResizeConfig,
    SincConfig,
    StageConfig,
)
from slimdiffsr.data.degradation.kernels import (
    anisotropic_kernels,
    identity_kernels,
    sample_blur_kernels,
    sample_sinc_kernels,
    sinc_kernels,
)
from slimdiffsr.data.degradation.ops import (
    blur,
    gaussian_noise,
    jpeg,
    poisson_noise,
    quantize,
    random_blur,
    random_gaussian_noise,
    random_jpeg,
    random_noise,
    random_poisson_noise,
    random_resize,
    resize,
)
from slimdiffsr.data.degradation.pipeline import degrade

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "KernelType",
    "Range",
    "BlurConfig",
    "DegradationConfig",
    "JpegConfig",
    "NoiseConfig",
    "ResizeConfig",
    "SincConfig",
    "StageConfig",
    "anisotropic_kernels",
    "blur",
    "degrade",
    "gaussian_noise",
    "identity_kernels",
    "jpeg",
    "poisson_noise",
    "quantize",
    "random_blur",
    "random_gaussian_noise",
    "random_jpeg",
    "random_noise",
    "random_poisson_noise",
    "random_resize",
    "resize",
    "sample_blur_kernels",
    "sample_sinc_kernels",
    "sinc_kernels",
]
