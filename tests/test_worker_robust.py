"""The worker cannot be knocked over: every malformed line gets an ``input`` error, reading goes on,
cancels name their job, and ``info``/``shutdown`` still work afterwards (issue 14)."""

from __future__ import annotations

import errno
import io
import json
import os
import threading
import time

import numpy as np
import pytest
import rasterio
from engine_util import texture, write_raster
from test_worker import WorkerProc, job

from slimdiffsr import protocol as P
from slimdiffsr.worker import Worker, error_message

NESTED = '{"type": "info", "id": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"

# (name, raw line, expected id in the answer, substring of the message)
BAD_LINES = [
    ("list id", '{"type": "info", "id": [1]}', None, "'id'"),
    ("dict id", '{"type": "info", "id": {"a": 1}}', None, "'id'"),
    ("bool id", '{"type": "models", "id": true}', None, "'id'"),
    ("float id", '{"type": "models", "id": 1.5}', None, "'id'"),
    ("cancel dict id", '{"type": "cancel", "id": {"job": 1}}', None, "'id'"),
    ("deep nesting", NESTED, None, "nested"),
    (
        "deep nesting in cancel",
        '{"type":"cancel","id":' + "[" * 5000 + "]" * 5000 + "}",
        None,
        "nested",
    ),
    ("not json", "this is not json", None, "not JSON"),
    ("json array", "[1, 2, 3]", None, "type"),
    ("unknown type", '{"type": "format_disk", "id": "x"}', "x", "unknown request type"),
    ("type not a string", '{"type": 5, "id": 3}', 3, "type"),
    ("invalid utf-8", b'{"type": "info", "id": "\xff\xfe"}', None, "UTF-8"),
    ("params not an object", '{"type": "upscale", "id": 1, "params": [1]}', 1, "object"),
    ("overwrite as string", {"overwrite": "false"}, "u", "overwrite must be a JSON boolean"),
    ("qa as string", {"qa": "no"}, "u", "qa must be a JSON boolean"),
    ("qa as number", {"qa": 1}, "u", "qa must be a JSON boolean"),
    ("tile as string", {"tile": "32"}, "u", "tile must be an integer"),
    ("tile huge", {"tile": 10**400}, "u", "tile must be an integer"),
    ("bands as string", {"bands": "1,2,3"}, "u", "bands"),
    ("bands zero", {"bands": [0, 1, 2]}, "u", "bands"),
    ("roi_bounds wrong", {"roi_bounds": ["a", 1, 2, 3]}, "u", "roi_bounds"),
    ("roi_bounds nan", {"roi_bounds": [float("nan"), 1, 2, 3]}, "u", "roi_bounds"),
    ("device unknown", {"device": "tpu"}, "u", "device"),
    ("precision list", {"precision": ["fp16"]}, "u", "precision"),
    ("input as number", {"input": 5}, "u", "input must be"),
    ("output with NUL", {"output": "a\x00b.tif"}, "u", "output must be"),
    ("batch_size zero", {"batch_size": 0}, "u", "batch_size"),
    ("scale 5", {"scale": 5}, "u", "scale"),
    ("unknown param", {"colour": 1}, "u", "colour"),
]


def raw(line) -> bytes:
    """A BAD_LINES entry as the bytes the worker reads (dicts are upscale params to merge)."""
    if isinstance(line, dict):
        params = {"input": "in.tif", "output": "out.tif", **line}
        return (json.dumps({"type": "upscale", "id": "u", "params": params}) + "\n").encode()
    if isinstance(line, str):
        line = line.encode()
    return line + b"\n"


class ListChannel:
    """The worker's channel, kept in memory: each message is still encoded and decoded."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.lock = threading.Lock()

    def send(self, msg: dict) -> None:
        with self.lock:
            self.lines.append(P.decode(P.encode(msg)))


def serve(data: bytes) -> tuple[int, list[dict]]:
    """Run a real Worker over ``data`` as stdin, to EOF; returns (exit status, answers)."""
    ch = ListChannel()
    w = Worker(ch, io.BytesIO(data))
    reader = threading.Thread(target=w.read_loop, daemon=True)
    reader.start()
    status = w.serve()
    reader.join(10)
    assert not reader.is_alive()
    return status, ch.lines


@pytest.mark.parametrize("name,line,rid,text", BAD_LINES, ids=[c[0] for c in BAD_LINES])
def test_each_malformed_line_gets_one_input_error_and_reading_goes_on(name, line, rid, text):
    status, answers = serve(raw(line) + b'{"type": "models", "id": "after"}\n')
    assert status == 0
    errors = [a for a in answers if a["type"] == "error"]
    assert len(errors) == 1, answers
    assert errors[0]["kind"] == "input" and errors[0]["id"] == rid
    assert text in errors[0]["message"], errors[0]["message"]
    assert "traceback" not in errors[0]
    assert answers[-1]["type"] == "models" and answers[-1]["id"] == "after"


def test_a_line_over_the_limit_is_skipped_whole():
    long = b'{"type": "info", "id": "' + b"x" * (P.MAX_LINE_BYTES + 10) + b'"}\n'
    status, answers = serve(long + b'{"type": "models", "id": 2}\n')
    assert [a["type"] for a in answers] == ["error", "models"]
    assert answers[0]["kind"] == "input" and "longer than" in answers[0]["message"]
    assert answers[1]["id"] == 2  # the tail of the long line was not read as a request


def test_cancel_for_unknown_id_or_without_id_while_idle_is_a_no_op(tmp_path):
    data = (texture(3, 48, 48, seed=60) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data)
    lines = [
        {"type": "cancel", "id": "nobody"},
        {"type": "cancel"},
        {"type": "cancel", "id": 99},
        job(99, src, tmp_path / "a.tif", model="bicubic", tile=32, overlap=16),
    ]
    r, wfd = os.pipe()  # stdin stays open while the job runs (EOF would cancel it)
    ch = ListChannel()
    w = Worker(ch, os.fdopen(r, "rb"))
    threading.Thread(target=w.read_loop, daemon=True).start()
    os.write(wfd, "".join(P.encode(m) for m in lines).encode())
    served = threading.Thread(target=w.serve)
    served.start()
    deadline = time.monotonic() + 120
    while not any(a["type"] in ("result", "error") for a in ch.lines):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.write(wfd, P.encode({"type": "shutdown"}).encode())
    served.join(30)
    os.close(wfd)
    final = [a for a in ch.lines if a["type"] in ("result", "error")]
    assert [a["type"] for a in final] == ["result"], final  # the later job 99 was not cancelled
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert ds.shape == (192, 192) and ds.read().std() > 10


def test_cancel_of_a_queued_job_answers_cancelled_without_running_it(tmp_path):
    data = (texture(3, 48, 48, seed=61) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data)
    ch = ListChannel()
    w = Worker(ch, io.BytesIO(b""))
    w.take(
        P.encode(job("q", src, tmp_path / "q.tif", model="bicubic", tile=32, overlap=16)).encode()
    )
    w.take(P.encode({"type": "cancel", "id": "q"}).encode())
    w.take(P.encode({"type": "shutdown"}).encode())
    assert w.serve() == 0
    assert [(a["type"], a.get("kind"), a["id"]) for a in ch.lines] == [("error", "cancelled", "q")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_wrong_typed_strings_never_replace_an_existing_output(tmp_path):
    data = (texture(3, 48, 48, seed=62) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data)
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious")
    lines = [
        job("o", src, out, model="bicubic", tile=32, overlap=16, overwrite="false"),
        job("q", src, out, model="bicubic", tile=32, overlap=16, qa="no"),
    ]
    _, answers = serve("".join(P.encode(m) for m in lines).encode())
    assert [(a["id"], a["kind"]) for a in answers] == [("o", "input"), ("q", "input")]
    assert out.read_bytes() == b"precious"


@pytest.mark.slow
def test_real_worker_survives_every_bad_line_then_answers_info_and_shuts_down(tmp_path):
    """The whole hostile session through real pipes, as the plugin would see it."""
    w = WorkerProc()
    try:
        assert w.next(timeout=60)["type"] == "hello"
        for name, line, _rid, text in BAD_LINES:
            w.proc.stdin.flush()
            w.proc.stdin.buffer.write(raw(line))  # raw bytes, invalid UTF-8 included
            w.proc.stdin.buffer.flush()
            err, events = w.until(("error",), timeout=60)
            assert err["kind"] == "input" and text in err["message"], (name, err)
            assert not events
        w.send({"type": "cancel", "id": "nobody"})
        w.send({"type": "info", "id": "alive"})
        info, _ = w.until(("info",), timeout=120)
        assert info["id"] == "alive" and info["torch"]
        w.send({"type": "shutdown"})
        assert w.proc.wait(30) == 0
    finally:
        w.close()


@pytest.mark.slow
def test_shutdown_during_a_job_cancels_it_and_exits(tmp_path):
    data = (texture(3, 256, 256, seed=63) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "big.tif", data)
    w = WorkerProc()
    try:
        assert w.next(timeout=60)["type"] == "hello"
        w.send(job(1, src, tmp_path / "out.tif", model="bicubic", tile=32, overlap=16))
        assert w.next(timeout=120)["type"] == "progress"
        w.send({"type": "shutdown"})
        err, _ = w.until(("error", "result"))
        assert err["type"] == "error" and err["kind"] == "cancelled"
        assert w.proc.wait(30) == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]
    finally:
        w.close()


def test_every_upscale_parameter_has_a_type_check():
    names = set(P.UPSCALE_PARAMS) | set(P.OPTIONAL_UPSCALE_PARAMS)
    assert names == set(P.UPSCALE_PARAM_CHECKS)


def serve_open(lines: list[dict], until: int = 1, timeout: float = 120) -> list[dict]:
    """A real Worker with stdin kept open until ``until`` final answers arrived, then shutdown."""
    r, wfd = os.pipe()
    ch = ListChannel()
    w = Worker(ch, os.fdopen(r, "rb"))
    threading.Thread(target=w.read_loop, daemon=True).start()
    os.write(wfd, "".join(P.encode(m) for m in lines).encode())
    served = threading.Thread(target=w.serve)
    served.start()
    deadline = time.monotonic() + timeout
    while sum(a["type"] in ("result", "error") for a in ch.lines) < until:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.write(wfd, P.encode({"type": "shutdown"}).encode())
    served.join(30)
    os.close(wfd)
    return ch.lines


def test_overwrite_true_replaces_only_a_raster(tmp_path):
    data = (texture(3, 48, 48, seed=64) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data)
    doc = tmp_path / "notes.tif"
    doc.write_text("my notes")
    link = tmp_path / "link.tif"
    link.symlink_to("/etc/hostname")
    answers = serve_open(
        [
            job("doc", src, doc, model="bicubic", tile=32, overlap=16, overwrite=True),
            job("link", src, link, model="bicubic", tile=32, overlap=16, overwrite=True),
        ],
        until=2,
    )
    final = {a["id"]: a for a in answers if a["type"] in ("result", "error")}
    assert final["doc"]["kind"] == "input" and "not a raster" in final["doc"]["message"]
    assert final["link"]["kind"] == "input" and "symbolic link" in final["link"]["message"]
    assert doc.read_text() == "my notes" and link.is_symlink()


def test_read_only_file_system_error_is_one_disk_line():
    e = OSError(errno.EROFS, "Read-only file system", "/media/ro/out.tif")
    msg = error_message(3, e)
    assert msg["kind"] == "disk" and msg["message"] == "/media/ro/out.tif: Read-only file system"
    assert "traceback" not in msg
