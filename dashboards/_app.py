"""The satchunk dashboard: a tornado app over the store, read-only, fully offline
(every script, style and map outline is served from this package)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import tornado.web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from chunkstore import InvalidIdError, NotFoundError, Store, validate_id

from . import _charts, _read, _runs
from ._guard import LOOPBACK, Guarded, Hosts, NotFound, Static, link
from ._quicklook import class_overlay, is_clear, palette, png, rgb_quicklook, stride_for

HERE = Path(__file__).parent
QUICKLOOK_SIDE = 720


class _Cache:
    """A small LRU of computed pages' parts, keyed by what they depend on."""

    def __init__(self, size: int = 64) -> None:
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return value


class _Base(Guarded):
    @property
    def store(self) -> Store:
        return self.application.settings["store"]

    @property
    def cache(self) -> _Cache:
        return self.application.settings["cache"]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Store reads block: run them off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def page(self, template: str, **context: Any) -> None:
        env: Environment = self.application.settings["jinja"]
        self.write(env.get_template(template).render(
            store=self.store.describe(), path=self.request.path, **context))

    def ids(self, *values: str) -> list[str]:
        try:
            return [validate_id(v, "id") for v in values]
        except InvalidIdError:
            raise tornado.web.HTTPError(404) from None


def _not_found(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapped(self: _Base, *args: str) -> None:
        try:
            await fn(self, *args)
        except NotFoundError as exc:
            raise tornado.web.HTTPError(404, reason=str(exc).splitlines()[0][:200]) from exc
    return wrapped


class CatalogPage(_Base):
    async def get(self) -> None:
        rows = await self.run(_read.catalog, self.store)
        land = self.application.settings["land"]
        colors = {c: _charts.PALETTE[i % len(_charts.PALETTE)] for i, c in enumerate(rows)}
        footprints = [{"geometry": s["geometry"], "href": f"/item/{c}/{s['id']}",
                       "title": f"{c}/{s['id']}", "color": colors[c]}
                      for c, scenes in rows.items() for s in scenes]
        self.page("catalog.html", rows=rows, colors=colors,
                  map_svg=Markup(_charts.footprint_map(footprints, land)))


class ItemPage(_Base):
    @_not_found
    async def get(self, collection: str, item: str) -> None:
        collection, item = self.ids(collection, item)
        detail = await self.run(_read.item_detail, self.store, collection, item)
        overlays = detail["overlays"]
        chosen = self.get_argument("overlay", overlays[0]["source"] if overlays else "")
        overlay = next((o for o in overlays if o["source"] == chosen), None)
        shares = None
        if overlay is not None:
            shares = await self.run(self._pixels, collection, item, overlay)
        stac_key = f"stac/{collection}/{item}/{item}.json"
        self.page("item.html", d=detail, row=detail["row"], overlays=overlays,
                  overlay=overlay, shares=shares, collection=collection, item=item,
                  stac_href=f"/{stac_key}", stac_uri=self.store.url(stac_key))

    def _pixels(self, collection: str, item: str, overlay: dict[str, Any]
                ) -> list[dict[str, Any]]:
        key = ("pixels", collection, item, overlay["source"], overlay["created"])
        if overlay["kind"] == "label":
            counts = self.cache.get(key, lambda: _read.label_pixels(self.store, collection,
                                                                    item))
        else:
            counts = self.cache.get(key, lambda: _read.mask_pixels(
                self.store, collection, item, overlay["source"], overlay["classes"]))
        total = sum(counts.values()) or 1
        return [{"name": n, "color": c, "pixels": counts.get(n, 0), "transparent": is_clear(n),
                 "share": 100 * counts.get(n, 0) / total}
                for n, c in zip(overlay["classes"], overlay["colors"], strict=True)]


class QuicklookImage(_Base):
    @_not_found
    async def get(self, collection: str, item: str, source: str | None = None) -> None:
        collection, item = self.ids(collection, item)
        if source is not None:
            (source,) = self.ids(source)
        data = await self.run(self._png, collection, item, source)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "no-cache")
        self.write(data)

    def _png(self, collection: str, item: str, source: str | None) -> bytes:
        detail = _read.item_detail(self.store, collection, item)
        step = stride_for(tuple(detail["row"]["shape"]), QUICKLOOK_SIDE)
        if source is None:
            key = ("rgb", collection, item, detail["stac"]["properties"].get("created"), step)
            return self.cache.get(key, lambda: png(rgb_quicklook(
                _read.read_rgb(self.store, collection, item, step))))
        overlay = next((o for o in detail["overlays"] if o["source"] == source), None)
        if overlay is None:
            raise NotFoundError(f"{collection}/{item} has no mask or label {source!r}")
        key = ("overlay", collection, item, source, overlay["created"],
               detail["stac"]["properties"].get("satchunk:label_source"), step)
        return self.cache.get(key, lambda: png(class_overlay(
            _read.read_classes(self.store, collection, item, source, step),
            overlay["classes"], overlay["colors"])))


class DatasetPage(_Base):
    async def get(self) -> None:
        rows = await self.run(_read.catalog, self.store)
        stats = await self.run(_read.dataset_stats, self.store, rows)
        charts = {}
        for c, s in stats.items():
            names = list(s["classes"])
            total = sum(s["classes"].values())
            charts[c] = {
                "classes": Markup(_charts.bar_chart(
                    names, [100 * s["classes"][n] / (total or 1) for n in names],
                    palette(names), label=f"{c} class distribution")) if names else None,
                "pixels": total,
                "cloud": Markup(_charts.histogram(s["cloud_cover"], 0, 100, 10, unit="%",
                                                  label=f"{c} cloud cover")),
                "scenes": len(rows[c]),
            }
        dates = {c: [(datetime.fromisoformat(d.replace("Z", "+00:00")), i)
                     for d, i in s["dates"]] for c, s in stats.items()}
        self.page("dataset.html", charts=charts,
                  timeline=Markup(_charts.timeline(dates, label="acquisition dates")))


class RunsPage(_Base):
    async def get(self) -> None:
        records = await self.run(_read.runs, self.store)
        rows = [_runs.run_row(r) for r in records]
        self.page("runs.html", rows=rows, refresh=any(r["status"] == "running" for r in rows))


class RunPage(_Base):
    @_not_found
    async def get(self, run_id: str) -> None:
        (run_id,) = self.ids(run_id)
        records = await self.run(_read.runs, self.store)
        record = next((r for r in records if r.get("run_id") == run_id), None)
        if record is None:
            raise NotFoundError(f"no job record {run_id!r}")
        hist = _runs.history(record)
        curves = None
        if hist:
            x = [h["epoch"] for h in hist]
            curves = {
                "loss": Markup(_charts.line_chart(
                    x, {"train loss": [h.get("train_loss") for h in hist]},
                    label="training loss", x_label="epoch")),
                "miou": Markup(_charts.line_chart(
                    x, {"val mIoU": [h.get("val_miou") for h in hist]},
                    label="validation mIoU", x_label="epoch")),
            }
        self.page("run.html", row=_runs.run_row(record), record=record, curves=curves,
                  history=hist, pretty=json.dumps(record, indent=2, default=str),
                  refresh=record.get("status") == "running")


class StacJson(_Base):
    """The catalog's own JSON files, so the item page can link to them."""

    @_not_found
    async def get(self, path: str) -> None:
        parts = path.split("/")
        if not parts[-1].endswith(".json"):
            raise tornado.web.HTTPError(404)
        self.ids(*parts[:-1], parts[-1][:-5])
        key = "stac/" + path
        if not await self.run(self.store.exists, key):
            raise NotFoundError(f"no {key} in the store")
        data = await self.run(self.store.read_bytes, key)
        self.set_header("Content-Type", "application/json")
        self.write(data)


def make_app(store: Store, allowed_hosts: Iterable[str] = LOOPBACK) -> tornado.web.Application:
    """The dashboard's routes over ``store``, answering only requests whose Host is one of
    ``allowed_hosts`` (each ``name``, on any port, or ``name:port``)."""
    jinja = Environment(loader=FileSystemLoader(HERE / "templates"),
                        autoescape=select_autoescape(["html"]))
    jinja.filters["num"] = lambda v, f="{:.1f}": "-" if v is None else f.format(v)
    jinja.filters["link"] = link
    land = json.loads((HERE / "data" / "land.geojson").read_text())
    return tornado.web.Application([
        (r"/", CatalogPage),
        (r"/item/([^/]+)/([^/]+)", ItemPage),
        (r"/quicklook/([^/]+)/([^/]+)\.png", QuicklookImage),
        (r"/overlay/([^/]+)/([^/]+)/([^/]+)\.png", QuicklookImage),
        (r"/dataset", DatasetPage),
        (r"/runs", RunsPage),
        (r"/runs/([^/]+)", RunPage),
        (r"/stac/(.+)", StacJson),
    ], static_path=str(HERE / "static"), static_handler_class=Static,
        default_handler_class=NotFound, hosts=Hosts(allowed_hosts), store=store,
        cache=_Cache(), jinja=jinja, land=land)
