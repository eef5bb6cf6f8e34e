"""Guard: the three doors to one engine call agree.

The worker protocol's upscale params (``protocol.UPSCALE_PARAMS`` + ``OPTIONAL_UPSCALE_PARAMS``),
the keywords of ``engine.run.upscale()`` and the options of ``slimdiffsr upscale`` name the same
settings, with the same defaults and the same choices. Expected values come from the code (the
signature, the protocol's tables), never from literals here; every deliberate difference is in an
allow-list below with the reason, so a new parameter added to one door and not the others fails.
"""

from __future__ import annotations

import argparse
import inspect

import pytest

from slimdiffsr import protocol
from slimdiffsr.cli import build_parser

engine_run = pytest.importorskip("slimdiffsr.engine.run")

# -- deliberate differences ---------------------------------------------------------------------
CALLBACKS = {"progress", "cancel", "feedback", "on_preflight"}  # Python callables, not settings
# upscale() keywords the protocol does not carry (the worker uses the engine's default)
NOT_IN_PROTOCOL = CALLBACKS | {
    "memory_mb",  # blending-buffer RAM: the worker keeps the default (wide rasters chunk anyway)
}
# upscale() keywords the CLI does not offer
NOT_IN_CLI = CALLBACKS | {
    "tile_memory_mb",  # the tile budget from the device's memory; the CLI sizes automatically
}
# CLI options that are not upscale() keywords: terminal output and the Dask runner
CLI_ONLY = {"quiet", "cluster", "split_pixels", "retries", "no_stac"}
# CLI spellings of upscale() keywords
CLI_NAMES = {"roi": "roi_bounds", "dtype": "out_dtype"}
# CLI values that mean an upscale() default: --dtype same is out_dtype=None
CLI_VALUE_MEANS = {("out_dtype", "same"): None}
# protocol defaults that differ from upscale()'s on purpose
PROTOCOL_DEFAULTS_DIFFER = {
    "tile",  # protocol.AUTO_TILE (0, a number a spin box can show) is upscale()'s None: automatic
    "overlap",  # likewise 0 = automatic
}
# CLI choice lists that are a deliberate subset of the protocol's
CLI_CHOICES_SUBSET = {"out_dtype"}  # the CLI offers same|float32; the plugin every output dtype
CHOICES = {  # keyword -> the protocol's list of allowed values
    "device": protocol.DEVICES,
    "precision": protocol.PRECISIONS,
    "runtime": protocol.RUNTIMES,
    "compress": protocol.COMPRESSIONS,
    "scale": protocol.SCALES,
    "out_dtype": protocol.OUT_DTYPES,
}


def _signature() -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(engine_run.upscale).parameters)


def _cli_actions() -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    up = sub.choices["upscale"]
    return {
        CLI_NAMES.get(a.dest, a.dest): a
        for a in up._actions
        if not isinstance(a, argparse._HelpAction)
    }


def test_protocol_params_are_upscale_keywords() -> None:
    keywords = set(_signature())
    params = set(protocol.UPSCALE_PARAMS) | set(protocol.OPTIONAL_UPSCALE_PARAMS)
    assert params - keywords == set(), "protocol params upscale() does not take"
    assert keywords - NOT_IN_PROTOCOL - params == set(), "upscale() keywords the protocol lacks"
    assert NOT_IN_PROTOCOL & params == set(), "allow-listed but present: trim NOT_IN_PROTOCOL"
    assert set(protocol.REQUIRED_UPSCALE_PARAMS) == {
        n for n, p in _signature().items() if p.default is inspect.Parameter.empty
    }


def test_protocol_defaults_are_upscale_defaults() -> None:
    sig = _signature()
    for name, default in protocol.UPSCALE_PARAMS.items():
        if name in protocol.REQUIRED_UPSCALE_PARAMS or name in PROTOCOL_DEFAULTS_DIFFER:
            continue
        assert default == sig[name].default, name
    for name in PROTOCOL_DEFAULTS_DIFFER:  # the allow-list stays true: 0 there, None here
        assert protocol.UPSCALE_PARAMS[name] == protocol.AUTO_TILE, name
        assert sig[name].default is None, name


def test_cli_options_are_upscale_keywords() -> None:
    keywords, options = set(_signature()), set(_cli_actions())
    assert options - CLI_ONLY - keywords == set(), "CLI options upscale() does not take"
    assert keywords - NOT_IN_CLI - options == set(), "upscale() keywords the CLI lacks"
    assert (NOT_IN_CLI - CALLBACKS) & options == set(), "allow-listed but present: trim NOT_IN_CLI"


def test_cli_defaults_are_upscale_defaults() -> None:
    sig, actions = _signature(), _cli_actions()
    for name, action in actions.items():
        if name in CLI_ONLY or sig[name].default is inspect.Parameter.empty:
            continue
        value = CLI_VALUE_MEANS.get((name, action.default), action.default)
        assert value == sig[name].default, f"--{action.dest}: {action.default!r}"


def test_choices_agree() -> None:
    actions = _cli_actions()
    for name, allowed in CHOICES.items():
        cli = set(actions[name].choices)
        if name in CLI_CHOICES_SUBSET:
            assert cli - {"same"} <= set(allowed), name
        else:
            assert cli == set(allowed), name
    from slimdiffsr import devices

    assert (devices.DEVICES, devices.PRECISIONS) == (protocol.DEVICES, protocol.PRECISIONS)


def test_the_guard_can_fail(monkeypatch) -> None:
    """A keyword added to upscale() alone is caught by both door checks (not vacuous)."""
    real = inspect.signature(engine_run.upscale)
    extra = inspect.Parameter("brand_new", inspect.Parameter.KEYWORD_ONLY, default=1)

    def upscale(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("not called")

    upscale.__signature__ = real.replace(parameters=[*real.parameters.values(), extra])
    monkeypatch.setattr(engine_run, "upscale", upscale)
    for check in (test_protocol_params_are_upscale_keywords, test_cli_options_are_upscale_keywords):
        with pytest.raises(AssertionError, match="lacks"):
            check()
