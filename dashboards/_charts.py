"""Small SVG charts and maps, rendered on the server (pure: no I/O, no scripts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
            f"{body}</svg>")


def _text(x: float, y: float, s: str, anchor: str = "start", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{c}>{escape(s)}</text>'


def bar_chart(labels: Sequence[str], values: Sequence[float], colors: Sequence[str] | None = None,
              *, label: str, fmt: str = "{:.1f} %", width: int = 460) -> str:
    """Horizontal bars, one per label, with the value printed at the end."""
    row, left, right = 22, 130, 70
    height = row * len(labels) + 10
    top = max(values, default=0) or 1
    body = []
    for i, (name, v) in enumerate(zip(labels, values, strict=True)):
        y = 5 + i * row
        w = (width - left - right) * v / top
        color = colors[i] if colors else PALETTE[i % len(PALETTE)]
        body.append(_text(left - 6, y + 14, name, "end"))
        body.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                    f'fill="{escape(color)}"><title>{escape(name)}: '
                    f"{escape(fmt.format(v))}</title></rect>")
        body.append(_text(left + w + 4, y + 14, fmt.format(v)))
    return _svg(width, height, "".join(body), label)


def histogram(values: Sequence[float], lo: float, hi: float, bins: int, *, label: str,
              unit: str = "", width: int = 460, height: int = 180) -> str:
    """Counts of ``values`` in ``bins`` equal bins over [lo, hi]."""
    counts = [0] * bins
    for v in values:
        i = min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))
        counts[i] += 1
    pad_l, pad_b, pad_t = 34, 30, 10
    top = max(counts, default=0) or 1
    bw = (width - pad_l - 10) / bins
    ph = height - pad_b - pad_t
    body = [f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - 10}" '
            f'y2="{height - pad_b}" class="axis"/>']
    for i, c in enumerate(counts):
        h = ph * c / top
        x = pad_l + i * bw
        a, b = lo + (hi - lo) * i / bins, lo + (hi - lo) * (i + 1) / bins
        body.append(f'<rect x="{x + 1:.1f}" y="{height - pad_b - h:.1f}" width="{bw - 2:.1f}" '
                    f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{a:g}-{b:g}{unit}: {c}'
                    "</title></rect>")
        if c:
            body.append(_text(x + bw / 2, height - pad_b - h - 3, str(c), "middle"))
    for i in range(0, bins + 1, max(1, bins // 5)):
        x = pad_l + i * bw
        body.append(_text(x, height - pad_b + 16, f"{lo + (hi - lo) * i / bins:g}{unit}",
                          "middle"))
    body.append(_text(4, pad_t + 10, str(top)))
    return _svg(width, height, "".join(body), label)


def timeline(rows: dict[str, Sequence[tuple[datetime, str]]], *, label: str,
             width: int = 640) -> str:
    """One row per group, a dot per (date, title)."""
    row, left, right = 28, 120, 30
    height = row * len(rows) + 40
    dates = [d for pts in rows.values() for d, _ in pts]
    if not dates:
        return _svg(width, 40, _text(10, 24, "no dated items"), label)
    t0, t1 = min(dates).timestamp(), max(dates).timestamp()
    if t1 - t0 < 86400:
        t0, t1 = t0 - 43200 * 30, t1 + 43200 * 30
    span = t1 - t0

    def x_of(d: datetime) -> float:
        return left + (width - left - right) * (d.timestamp() - t0) / span

    body = []
    for i, (name, pts) in enumerate(rows.items()):
        y = 14 + i * row
        body.append(_text(left - 8, y + 4, name, "end"))
        body.append(f'<line x1="{left}" y1="{y}" x2="{width - right}" y2="{y}" class="grid"/>')
        for d, title in pts:
            body.append(f'<circle cx="{x_of(d):.1f}" cy="{y}" r="5" '
                        f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(title)} '
                        f"{d:%Y-%m-%d}</title></circle>")
    ticks = 5
    for k in range(ticks + 1):
        ts = t0 + span * k / ticks
        d = datetime.fromtimestamp(ts)
        body.append(_text(x_of(d), height - 8, f"{d:%Y-%m-%d}", "middle"))
    return _svg(width, height, "".join(body), label)


def line_chart(x: Sequence[float], series: dict[str, Sequence[float | None]], *, label: str,
               x_label: str, width: int = 460, height: int = 220) -> str:
    """Lines over a shared x; each series is scaled to its own [0, max] (labelled)."""
    pad_l, pad_r, pad_t, pad_b = 40, 10, 24, 34
    if not x:
        return _svg(width, 40, _text(10, 24, "no epochs yet"), label)
    x0, x1 = min(x), max(x)
    span = (x1 - x0) or 1

    def px(v: float) -> float:
        return pad_l + (width - pad_l - pad_r) * (v - x0) / span

    body = [f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" '
            f'y2="{height - pad_b}" class="axis"/>',
            f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" class="axis"/>',
            _text((width + pad_l) / 2, height - 4, x_label, "middle")]
    for v in sorted(set(x)):
        body.append(_text(px(v), height - pad_b + 14, f"{v:g}", "middle"))
    legend_x = pad_l
    for i, (name, ys) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        vals = [v for v in ys if v is not None and math.isfinite(v)]
        top = max(vals, default=1.0) or 1.0
        pts = [(px(a), height - pad_b - (height - pad_b - pad_t) * b / top)
               for a, b in zip(x, ys, strict=True) if b is not None and math.isfinite(b)]
        if pts:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                        'stroke-width="2"/>')
            body.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>'
                        for a, b in pts)
        body.append(f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{color}"/>')
        text = f"{name} (max {top:.3g})"
        body.append(_text(legend_x + 14, 15, text))
        legend_x += 24 + 7 * len(text)
    return _svg(width, height, "".join(body), label)


def footprint_map(footprints: Sequence[dict[str, Any]], land: dict[str, Any], *,
                  width: int = 640, height: int = 360) -> str:
    """Footprints (WGS84 GeoJSON polygons with ``href``, ``title``, ``color``) over the
    land outline, zoomed to their extent, with a lon/lat graticule."""
    if not footprints:
        return _svg(width, 40, _text(10, 24, "no footprints"), "map")
    xs = [p[0] for f in footprints for ring in _rings(f["geometry"]) for p in ring]
    ys = [p[1] for f in footprints for ring in _rings(f["geometry"]) for p in ring]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    kx = math.cos(math.radians(cy))  # equirectangular, true scale at the centre
    span = max((max(xs) - min(xs)) * kx * 1.4, (max(ys) - min(ys)) * 1.4, 0.2)
    sy = height / max(span, span * height / width)
    sx = sy * kx

    def proj(lon: float, lat: float) -> tuple[float, float]:
        return width / 2 + (lon - cx) * sx, height / 2 - (lat - cy) * sy

    def path(geom: dict[str, Any]) -> str:
        return " ".join("M" + " L".join("{:.1f},{:.1f}".format(*proj(*p[:2])) for p in ring)
                        + " Z" for ring in _rings(geom))

    body = [f'<rect width="{width}" height="{height}" class="sea"/>']
    body += [f'<path d="{path(f["geometry"])}" class="land"/>' for f in land["features"]]
    lon0, lon1 = cx - width / 2 / sx, cx + width / 2 / sx
    lat0, lat1 = cy - height / 2 / sy, cy + height / 2 / sy
    step = _nice_step(max(lon1 - lon0, lat1 - lat0) / 4)
    v = math.ceil(lon0 / step) * step
    while v < lon1:
        x, _ = proj(v, cy)
        body.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" class="grid"/>')
        body.append(_text(x + 2, height - 4, f"{v:.4g}°", cls="tick"))
        v += step
    v = math.ceil(lat0 / step) * step
    while v < lat1:
        _, y = proj(cx, v)
        body.append(f'<line x1="0" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" class="grid"/>')
        body.append(_text(2, y - 2, f"{v:.4g}°", cls="tick"))
        v += step
    for f in footprints:
        body.append(f'<a href="{escape(f["href"])}"><path d="{path(f["geometry"])}" '
                    f'fill="{escape(f["color"])}" class="footprint"><title>'
                    f'{escape(f["title"])}</title></path></a>')
    body.append(_text(width - 4, 12, "land: Natural Earth", "end", "tick"))
    return _svg(width, height, "".join(body), "footprints")


def _rings(geom: dict[str, Any]) -> list[list[list[float]]]:
    if geom["type"] == "Polygon":
        return list(geom["coordinates"])
    if geom["type"] == "MultiPolygon":
        return [r for poly in geom["coordinates"] for r in poly]
    return []


def _nice_step(raw: float) -> float:
    exp = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * exp:
            return m * exp
    return 10 * exp
