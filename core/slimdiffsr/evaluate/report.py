"""Text table, markdown/CSV table, quality-vs-speed plot and side-by-side crops of an evaluation."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimdiffsr.evaluate.scoring import LOWER_BETTER, Results


@dataclass
class Sample:
    """What the report needs to draw one image's side-by-side crops."""

    name: str
    hr: np.ndarray | None
    lr: np.ndarray | None
    sr: dict[str, np.ndarray]


def _arrow(c: str) -> str:
    return "" if c == "seconds" else ("↓" if c in LOWER_BETTER else "↑")


def _fmt(c: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if c in ("psnr", "musiq") or c == "consistency":
        return f"{v:.2f}"
    if c == "seconds":
        return f"{v:.3f}"
    return f"{v:.4f}"


def format_table(res: Results, baseline: str | None = "bicubic") -> str:
    """Methods x mean metrics as aligned text, plus a difference row per method vs baseline."""
    means = res.means()
    cols = res.columns()
    head = ["method", "n"] + [f"{c}{_arrow(c)}" for c in cols]
    rows = []
    for m, vals in means.items():
        rows.append([m, str(len(res.per_image[m]))] + [_fmt(c, vals.get(c)) for c in cols])
    if baseline in means:
        for m, vals in means.items():
            if m == baseline:
                continue
            diff = []
            for c in cols:
                a, b = vals.get(c), means[baseline].get(c)
                diff.append("-" if a is None or b is None else f"{a - b:+.4g}")
            rows.append([f"  {m} - {baseline}", ""] + diff)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(  # noqa: E731
        s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(r, widths))
    )
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _png(arr: np.ndarray, path: Path) -> None:
    """Save (C, H, W) or (H, W) in [0, 1] as an 8-bit PNG (first three bands as RGB)."""
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[:3] if a.shape[0] >= 3 else np.repeat(a[:1], 3, axis=0)
        a = a.transpose(1, 2, 0)
    Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def _heat(m: np.ndarray, vmax: float) -> np.ndarray:
    """A (H, W) error map -> (3, H, W) black-red-yellow picture, saturating at ``vmax``."""
    t = np.clip(m / max(vmax, 1e-12), 0, 1)
    return np.stack([np.clip(2 * t, 0, 1), np.clip(2 * t - 1, 0, 1), np.zeros_like(t)])


def write_report(res: Results, samples: list[Sample], folder: Path, scale: int) -> list[Path]:
    """Write table.md, table.csv, quality_speed.png and crops/<image>.png; returns the paths."""
    from slimdiffsr.metrics.rs import consistency_map

    folder.mkdir(parents=True, exist_ok=True)
    means = res.means()
    cols = res.columns()
    out: list[Path] = []
    params = res.info.get("params", {})
    csv_path = folder / "table.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "images"] + cols + (["params_m"] if params else []))
        for m, vals in means.items():
            extra = [params.get(m, 0) / 1e6] if params else []
            w.writerow([m, len(res.per_image[m])] + [vals.get(c, "") for c in cols] + extra)
    out.append(csv_path)
    md = [f"# Evaluation ({res.info.get('mode')} mode, x{scale})", ""]
    heads = [f"{c} {_arrow(c)}".strip() for c in cols] + (["Params M"] if params else [])
    md.append("| Method | " + " | ".join(heads) + " |")
    md.append("|---|" + "---|" * len(heads))
    for m, vals in means.items():
        cells = [_fmt(c, vals.get(c)) for c in cols]
        cells += [f"{params.get(m, 0) / 1e6:.2f}"] if params else []
        md.append(f"| {m} | " + " | ".join(cells) + " |")
    md += [
        "",
        f"Mean over images; `seconds` is the model forward time per image "
        f"(device {res.info.get('device', '?')}).",
    ]
    md += [f"- {n}" for n in res.notes]
    md += [f"- skipped {k}: {v}" for k, v in res.skipped.items()]
    md += ["", "```", " ".join(res.info.get("command", [])), "```"]
    (folder / "table.md").write_text("\n".join(md) + "\n")
    out.append(folder / "table.md")

    quality = next((c for c in ("lpips", "dists", "psnr", "niqe") if c in cols), None)
    if quality and "seconds" in cols:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
        for m, vals in means.items():
            if quality in vals and "seconds" in vals:
                ax.scatter(vals["seconds"], vals[quality])
                ax.annotate(m, (vals["seconds"], vals[quality]), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log)")
        ax.set_ylabel(f"{quality} {_arrow(quality)}")
        ax.set_title(f"quality vs speed (device {res.info.get('device', '?')})")
        fig.tight_layout()
        fig.savefig(folder / "quality_speed.png")
        plt.close(fig)
        out.append(folder / "quality_speed.png")

    crops = folder / "crops"
    for s in samples:
        crops.mkdir(exist_ok=True)
        panels = []
        order = sorted(s.sr, key=lambda m: m != "bicubic")
        panels += [s.sr[m] for m in order]
        if s.hr is not None:
            panels.append(s.hr)
        learned = [m for m in order if m != "bicubic"] or order
        if s.lr is not None:
            sr = s.sr[learned[0]]
            if sr.shape[-2:] == (s.lr.shape[-2] * scale, s.lr.shape[-1] * scale):
                cmap = consistency_map(sr, s.lr, scale)
                big = np.kron(cmap, np.ones((scale, scale)))
                panels.append(_heat(big, 8 / 255))
        h = min(p.shape[-2] for p in panels)
        w = min(p.shape[-1] for p in panels)
        side = min(h, w, 192)
        r0, c0 = (h - side) // 2, (w - side) // 2
        tiles = []
        for p in panels:
            t = p if p.ndim == 3 else p[None]
            t = t[:3] if t.shape[0] >= 3 else np.repeat(t[:1], 3, axis=0)
            tiles.append(t[:, r0 : r0 + side, c0 : c0 + side])
            tiles.append(np.ones((3, side, 4), dtype=np.float32))
        path = crops / f"{s.name.replace('/', '_')}.png"
        _png(np.concatenate(tiles[:-1], axis=2), path)
        out.append(path)
    if samples:
        legend = " | ".join(
            sorted(samples[0].sr, key=lambda m: m != "bicubic")
            + (["HR"] if samples[0].hr is not None else [])
            + (["|down(SR)-LR| (0..8/255)"] if samples[0].lr is not None else [])
        )
        (crops / "README.md").write_text(f"Panels, left to right: {legend}\n")
    return out
