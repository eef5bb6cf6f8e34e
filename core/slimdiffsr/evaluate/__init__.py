"""``slimdiffsr evaluate``: score super-resolution the way the paper does, plus RS trust metrics.

Modules: ``cli`` (arguments and ``main``), ``modes`` (model-driven, paired and no-reference runs),
``scoring`` (metric names, ``Scorer``, ``Results``), ``rasters`` (reading and cropping images) and
``report`` (text table, markdown/CSV, plot, crops). The names below are the package's public face.
"""

from slimdiffsr.devices import resolve_device
from slimdiffsr.evaluate.cli import main, parse_args
from slimdiffsr.evaluate.modes import (
    SENSORS,
    evaluate_folders,
    evaluate_models,
    load_models,
    run_model,
    sensor_of,
)
from slimdiffsr.evaluate.rasters import Raster, centre_crop, read_raster, resize_to, to_dtype_grid
from slimdiffsr.evaluate.report import Sample, format_table, write_report
from slimdiffsr.evaluate.scoring import (
    ALL_METRICS,
    DEFAULT_NR_METRICS,
    DEFAULT_REF_METRICS,
    DETAIL_METRIC,
    LEARNED_FR,
    LEARNED_NR,
    LOWER_BETTER,
    LR_METRICS,
    PIXEL_METRICS,
    EvaluateError,
    Results,
    Scorer,
    by_sensor,
)

__all__ = [
    "ALL_METRICS",
    "DEFAULT_NR_METRICS",
    "DEFAULT_REF_METRICS",
    "DETAIL_METRIC",
    "LEARNED_FR",
    "LEARNED_NR",
    "LOWER_BETTER",
    "LR_METRICS",
    "PIXEL_METRICS",
    "SENSORS",
    "EvaluateError",
    "Raster",
    "Results",
    "Sample",
    "Scorer",
    "by_sensor",
    "centre_crop",
    "evaluate_folders",
    "evaluate_models",
    "format_table",
    "load_models",
    "main",
    "parse_args",
    "read_raster",
    "resize_to",
    "resolve_device",
    "run_model",
    "sensor_of",
    "to_dtype_grid",
    "write_report",
]
