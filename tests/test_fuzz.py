"""Property-based fuzzing (hypothesis, bounded time) of the two parsers that read untrusted text:
the worker's request reader and the model-card loader. Neither may raise anything but its own
error, and the worker's reader must answer every line."""

from __future__ import annotations

import io
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimdiffsr import protocol as P
from slimdiffsr.models.card import ModelCard, ModelFileError
from slimdiffsr.worker import Worker

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)
KEYS = list(P.UPSCALE_PARAMS) + list(P.OPTIONAL_UPSCALE_PARAMS)
REQUEST = st.fixed_dictionaries(
    {"type": st.sampled_from([*P.REQUEST_TYPES, "x"]) | st.text(max_size=5)},
    optional={
        "id": JSON,
        "params": st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), JSON, max_size=6),
    },
)


class Sink:
    def __init__(self) -> None:
        self.lines: list[dict] = []

    def send(self, msg: dict) -> None:
        self.lines.append(P.decode(P.encode(msg)))


@FUZZ
@given(st.binary(max_size=300) | REQUEST.map(lambda d: json.dumps(d).encode()))
def test_request_reader_answers_or_queues_every_line_and_never_raises(line):
    sink = Sink()
    w = Worker(sink, io.BytesIO(b""))
    line = line.replace(b"\n", b" ")
    w.take(line)  # must not raise, whatever the bytes
    queued = w.requests.qsize()
    assert queued + len(sink.lines) <= 1
    for msg in sink.lines:
        assert msg["type"] == "error" and msg["kind"] == "input"
    if queued:
        msg = w.requests.get_nowait()
        if msg is not None and isinstance(msg, dict):
            P.validate_request(msg)  # what is queued is a valid request
            if msg["type"] == P.UPSCALE:
                P.validate_upscale_params(msg.get("params"))


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_reader_thread_survives_any_stream_and_stops_at_eof(chunks):
    sink = Sink()
    data = b"\n".join(c.replace(b"\n", b" ") for c in chunks) + b'\n{"type":"shutdown"}\n'
    w = Worker(sink, io.BytesIO(data))
    t = threading.Thread(target=w.read_loop)
    t.start()
    t.join(10)
    assert not t.is_alive() and w.cancel_all.is_set()


CARD_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        k: JSON
        for k in ("name", "architecture", "scale", "config", "bands", "value_contract", "halo")
    },
)


@FUZZ
@given(JSON | CARD_FIELDS | st.text(max_size=50))
def test_card_loader_gives_a_card_or_one_model_error(value):
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        card = ModelCard.from_json(text, "fuzz.safetensors")
    except ModelFileError as e:
        assert "\n" not in str(e) and "fuzz.safetensors" in str(e)
        return
    assert isinstance(card.scale, int) and card.scale in (2, 4, 8)
    assert isinstance(card.config, dict) and isinstance(card.bands, list)
