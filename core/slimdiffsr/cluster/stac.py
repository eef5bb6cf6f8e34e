"""A STAC catalogue of a run's outputs: one item per output, one collection for the folder.

Items carry the provenance the output's GeoTIFF tags record (model, model hash, value mapping,
scale, source path and its sha256) as ``slimdiffsr:*`` properties, the projection extension
(``proj:code``, ``proj:shape``, ``proj:transform``: what odc-stac needs to load without opening
the files) and STAC 1.1 ``bands`` on the data asset. The catalogue is self-contained (relative
links), written as ``OUT/collection.json`` and ``OUT/items/<id>.json``, and a later run into the
same folder adds to it. QGIS STAC browser plugins and odc-stac read it as is.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds, transform_geom

from slimdiffsr import __version__

MEDIA_VRT = "application/x-gdal-vrt"  # not registered; GDAL's own name for the format
_DATE_TAGS = ("ACQUISITION_DATETIME", "ACQUISITION_DATE", "DATETIME", "TIFFTAG_DATETIME")


def _datetime(tags: dict[str, str]) -> tuple[str | None, str]:
    """Acquisition time from the (source's, copied) tags, as ISO text, and which tag gave it."""
    for k in _DATE_TAGS:
        v = tags.get(k)
        if not v:
            continue
        text = v.strip()
        if re.fullmatch(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d", text):  # TIFF's own format
            text = text.replace(":", "-", 2).replace(" ", "T")
        try:
            t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return t.isoformat(), k
    return None, ""


def output_facts(path: Path) -> dict[str, Any]:
    """What an item needs from an output raster (rasterio only; runs on the worker)."""
    with rasterio.open(path) as src:
        crs = src.crs
        b = src.bounds
        ring = {
            "type": "Polygon",
            "coordinates": [
                [(b.left, b.bottom), (b.right, b.bottom), (b.right, b.top), (b.left, b.top)]
                + [(b.left, b.bottom)]
            ],
        }
        if crs is not None:
            bbox = list(transform_bounds(crs, "EPSG:4326", *b, densify_pts=21))
            geom = transform_geom(crs, "EPSG:4326", ring, antimeridian_cutting=True)
            geom = {"type": geom["type"], "coordinates": geom["coordinates"]}
        else:  # no CRS: pixel space is all there is (the item still describes the file)
            bbox, geom = list(b), ring
        epsg = crs.to_epsg() if crs is not None else None
        bands = []
        for i in range(src.count):
            d: dict[str, Any] = {"name": src.descriptions[i] or f"b{i + 1}"}
            d["data_type"] = src.dtypes[i]
            if src.nodata is not None:
                d["nodata"] = float(src.nodata)
            d["colorinterp"] = src.colorinterp[i].name
            bands.append(d)
        return {
            "path": str(path),
            "driver": src.driver,
            "bbox": bbox,
            "geometry": geom,
            "epsg": epsg,
            "wkt2": crs.to_wkt() if crs is not None and epsg is None else None,
            "shape": [src.height, src.width],
            "transform": list(src.transform)[:6],
            "native_bbox": list(b),
            "gsd": abs(src.transform.a),
            "bands": bands,
            "tags": dict(src.tags()),
        }


def _media_type(path: Path, tags: dict[str, str], driver: str) -> str:
    import pystac

    if path.suffix.lower() == ".vrt" or driver == "VRT":
        return MEDIA_VRT
    if tags.get("LAYOUT", "").upper() == "COG" or tags.get("SLIMDIFFSR_COG") == "1":
        return pystac.MediaType.COG
    try:
        with rasterio.open(path) as src:
            if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG":
                return pystac.MediaType.COG
    except Exception:  # noqa: BLE001
        pass
    return pystac.MediaType.GEOTIFF


def _provenance(tags: dict[str, str], rec: dict[str, Any], sha: str | None) -> dict[str, Any]:
    """``slimdiffsr:*`` properties from the output tags (engine-written ``SLIMDIFFSR_*``)."""
    p: dict[str, Any] = {}
    for k, v in tags.items():
        if k.startswith("SLIMDIFFSR_"):
            p["slimdiffsr:" + k[len("SLIMDIFFSR_") :].lower()] = v
    if "slimdiffsr:scale" in p:
        try:
            p["slimdiffsr:scale"] = int(p["slimdiffsr:scale"])
        except ValueError:
            pass
    for key in ("slimdiffsr:value_contract", "slimdiffsr:value_mapping"):
        if key in p:
            import json

            try:
                p[key] = json.loads(p[key])
            except (TypeError, ValueError):
                pass
    p["slimdiffsr:source_path"] = str(Path(rec["input"]).resolve())
    if sha:
        p["slimdiffsr:source_sha256"] = sha
    return p


def make_item(rec: dict[str, Any]) -> Any:
    """A pystac Item for a finished record (``status`` ok, with ``facts``)."""
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    f = rec["facts"]
    out = Path(rec["output"])
    tags = f["tags"]
    when, date_tag = _datetime(tags)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    item = pystac.Item(
        id=out.stem,
        geometry=f["geometry"],
        bbox=f["bbox"],
        datetime=dt.datetime.fromisoformat(when) if when else now,
        properties={},
    )
    props = item.properties
    props["created"] = now.isoformat().replace("+00:00", "Z")
    props["gsd"] = f["gsd"]
    props["slimdiffsr:datetime_from"] = date_tag or "processing time (no acquisition date tag)"
    props.update(_provenance(tags, rec, f.get("source_sha256")))
    summ = rec.get("summary") or {}
    if summ.get("mean_consistency") is not None:
        props["slimdiffsr:mean_consistency"] = summ["mean_consistency"]
    props["processing:software"] = {"slimdiffsr": __version__}
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    if f["epsg"] is not None:
        proj.epsg = f["epsg"]
    elif f.get("wkt2"):
        proj.epsg = None
        proj.wkt2 = f["wkt2"]
    proj.shape = f["shape"]
    proj.transform = f["transform"]
    proj.bbox = f["native_bbox"]
    data = pystac.Asset(
        href=str(out.resolve()),
        media_type=_media_type(out, tags, f["driver"]),
        roles=["data"],
        title=f"x{props.get('slimdiffsr:scale', '?')} super-resolution of {Path(rec['input']).name}",
    )
    data.extra_fields["bands"] = [
        {k: v for k, v in b.items() if k in ("name", "data_type", "nodata")} for b in f["bands"]
    ]
    item.add_asset("data", data)
    for name, key, media, role in (
        ("qa", "qa_output", pystac.MediaType.GEOTIFF, "quality"),
        ("qa_report", "qa_json", pystac.MediaType.JSON, "metadata"),
    ):
        if rec.get(key) and Path(rec[key]).exists():
            item.add_asset(
                name, pystac.Asset(str(Path(rec[key]).resolve()), media_type=media, roles=[role])
            )
    item.add_link(
        pystac.Link(
            "derived_from",
            Path(rec["input"]).resolve().as_uri(),
            media_type=pystac.MediaType.GEOTIFF,
            title="source raster",
        )
    )
    return item


def write_collection(
    records: list[dict[str, Any]],
    out_dir: Path,
    *,
    collection_id: str | None = None,
    description: str | None = None,
) -> Path | None:
    """Write (or extend) ``out_dir/collection.json`` with an item per finished record."""
    import pystac
    from pystac.layout import CustomLayoutStrategy

    items = [make_item(r) for r in records if r.get("status") == "ok" and r.get("facts")]
    path = out_dir / "collection.json"
    old: list[Any] = []
    if path.exists():
        try:
            prev = pystac.Collection.from_file(str(path))
            new_ids = {i.id for i in items}
            for it in prev.get_items(recursive=True):
                asset = it.assets.get("data")
                if it.id not in new_ids and asset and Path(asset.get_absolute_href()).exists():
                    it.make_asset_hrefs_absolute()
                    old.append(it.clone())
        except Exception:  # noqa: BLE001 - an unreadable old catalogue is replaced
            old = []
    items = old + items
    if not items:
        return None
    bboxes = [i.bbox for i in items]
    bbox = [
        min(b[0] for b in bboxes),
        min(b[1] for b in bboxes),
        max(b[2] for b in bboxes),
        max(b[3] for b in bboxes),
    ]
    times = [i.datetime for i in items if i.datetime]
    models = sorted({str(i.properties.get("slimdiffsr:model")) for i in items})
    cid = collection_id or re.sub(r"[^A-Za-z0-9_.-]+", "-", f"slimdiffsr-{out_dir.resolve().name}")
    coll = pystac.Collection(
        id=cid,
        description=description
        or f"Super-resolved rasters made by SlimDiffSR {__version__} ({', '.join(models)}).",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(times), max(times)]])
        ),
        license="other",
        title=f"SlimDiffSR outputs in {out_dir.resolve().name}",
        providers=[
            pystac.Provider(
                "SlimDiffSR", roles=[pystac.ProviderRole.PROCESSOR], url="https://github.com"
            )
        ],
    )
    coll.summaries.add("slimdiffsr:model", models)
    scales = sorted({i.properties.get("slimdiffsr:scale") for i in items} - {None})
    if scales:
        coll.summaries.add("slimdiffsr:scale", scales)
    coll.add_items(items)
    strategy = CustomLayoutStrategy(
        item_func=lambda item, parent_dir: f"{parent_dir}/items/{item.id}.json"
    )
    coll.normalize_hrefs(str(out_dir.resolve()), strategy=strategy)
    coll.make_all_asset_hrefs_relative()
    coll.save(pystac.CatalogType.SELF_CONTAINED)
    return path
