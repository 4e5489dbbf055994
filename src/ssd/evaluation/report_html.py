"""One self-contained HTML page from :meth:`ssd.evaluation.report.Report.to_dict`: inline SVG charts,
heat-map tables and JPEG thumbnails as data URIs, no script or style from anywhere else.

Every number on the page is written from the report's dict and carries its path there in ``data-key``
(``headline.mAP``, ``breakdowns.distance.cells.0-50 m.Car.AP``), so a test can compare the two.
"""
from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:12px 20px;color:#222}
h1{font-size:22px;margin:4px 0 10px}h2{font-size:17px;margin:22px 0 6px;border-bottom:1px solid #ddd}
.head{display:flex;gap:14px;flex-wrap:wrap}.big{border:1px solid #ccc;border-radius:6px;padding:6px 14px;min-width:110px}
.big b{display:block;font-size:26px}.big>span{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f4f4f4}td.few{color:#999;font-style:italic}.grid{display:flex;flex-wrap:wrap;gap:10px}
.thumb{border:1px solid #ccc;padding:4px;font-size:12px;width:300px;word-break:break-all}.grid>div{max-width:600px}.thumb img{width:100%}
.full{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);z-index:9}.full:target{display:block}
.full img{max-width:98vw;max-height:94vh;display:block;margin:2vh auto}.note{color:#666;font-size:12px}
"""
# a script of the page's own: it marks in the DOM whether every image decoded (the browser test reads it)
# and where the headline ends on the first screen
CHECK_IMAGES = """
window.addEventListener('load',function(){var i=[].slice.call(document.images),b=document.body;
b.setAttribute('data-images',i.length+':'+i.filter(function(x){return x.complete&&x.naturalWidth>0}).length);
b.setAttribute('data-headline-bottom',Math.ceil(document.getElementById('headline').getBoundingClientRect().bottom)+':'+window.innerHeight);});
"""


def render_html(report: Mapping[str, Any], images: Mapping[int, tuple[bytes, bytes]] | None = None) -> str:
    """The page of ``report`` (:meth:`Report.to_dict`); ``images``: image id -> (thumbnail, full frame) JPEG bytes."""
    images = images or {}
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(report['title'])}</title>",
             f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{STYLE}</style></head><body>",
             f"<h1>{_e(report['title'])}</h1>", _headline(report)]
    measured = [name for name, ap in report["per_class"].items() if ap >= 0]
    unmeasured = [name for name, ap in report["per_class"].items() if ap < 0]
    parts.append("<div class='grid'>")
    for attribute, breakdown in report["breakdowns"].items():
        parts += [f"<div><h2>AP by class and {_e(attribute)}</h2>", _breakdown(attribute, breakdown, measured), "</div>"]
    parts.append("</div>")
    if unmeasured:
        parts.append(f"<p class='note'>No ground truth (left out of the tables): {_e(', '.join(unmeasured))}.</p>")
    if report.get("error_types"):
        parts += ["<h2>Where the AP goes: error types (TIDE)</h2>", _error_types(report["error_types"])]
    parts += ["<h2>Confusion matrix</h2>", _confusion(report["confusion"])]
    if report["curves"]:
        parts += ["<h2>Precision-recall and F1</h2>", _curves(report["curves"])]
    if report["training"]:
        parts += ["<h2>Training</h2>", _training(report["training"])]
    parts += ["<h2>Worst frames</h2>", _worst(report, images)]
    if report.get("comparison"):
        parts += [f"<h2>Compared with {_e(report['comparison']['other'])}</h2>", _comparison(report["comparison"])]
    parts += [f"<script>{CHECK_IMAGES}</script></body></html>"]
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float, key: str, digits: int = 4) -> str:
    """A number with its report path; COCOeval's -1 (nothing to measure) shows as n/a."""
    text = "n/a" if value is None or value < 0 else f"{value:.{digits}f}"
    return f"<span class='num' data-key='{_e(key)}'>{text}</span>"


def _headline(report: Mapping[str, Any]) -> str:
    head, counts = report["headline"], report["counts"]
    tiles = [(name, _num(head[name], f"headline.{name}")) for name in ("mAP", "AP50", "AP75") if name in head]
    recall = [name for name in head if name.startswith("AR") and name[2:].isdigit()]
    if recall:
        tiles.append((f"{recall[-1]} (recall)", _num(head[recall[-1]], f"headline.{recall[-1]}")))
    tiles += [(name.replace("_", " "), f"<span class='num' data-key='counts.{name}'>{counts[name]}</span>") for name in ("images", "ground_truth", "detections")]
    return "<div class='head' id='headline'>" + "".join(f"<div class='big'><b>{value}</b><span>{_e(label)}</span></div>" for label, value in tiles) + "</div>"


def _heat(value: float) -> str:
    """A background from red (0) through yellow to green (1); grey where undefined."""
    if value is None or value < 0:
        return "#eee"
    return f"hsl({120 * min(max(value, 0.0), 1.0):.0f},70%,80%)"


def _breakdown(attribute: str, breakdown: Mapping[str, Any], classes: Sequence[str]) -> str:
    """AP per class (rows: "all", then ``classes``) and band (columns: "all", then the bands); the
    "all" column is the per-class AP, its "all" row the headline mAP."""
    cells = breakdown["cells"]
    bands = list(cells)
    classes = ["all", *classes]
    header = "".join(f"<th>{_e(band)}</th>" for band in bands)
    rows = []
    for name in classes:
        tds = []
        for band in bands:
            cell = cells[band][name]
            key = f"breakdowns.{attribute}.cells.{band}.{name}"
            title = f"AP50 {cell['AP50']:.3f}, AR {cell['AR']:.3f}, {cell['ground_truth']} objects, {cell['detections']} detections"
            if cell["few"]:
                tds.append(f"<td class='few' title='{_e(title)}'>{_num(cell['AP'], key + '.AP', 2)} <small>n={cell['ground_truth']}</small></td>")
            else:
                tds.append(f"<td style='background:{_heat(cell['AP'])}' title='{_e(title)}'>{_num(cell['AP'], key + '.AP')}"
                           f" <small>n={cell['ground_truth']}</small></td>")
        rows.append(f"<tr><th>{_e(name)}</th>{''.join(tds)}</tr>")
    note = ("<p class='note'>AP @[.5:.95] per class and band, n = ground-truth objects; cells in grey italics rest on fewer "
            "than 10 objects. ")
    if breakdown.get("background_detections"):
        note += f"{breakdown['background_detections']} detections overlap no object and count against every band. "
    return f"<table><tr><th>class</th>{header}</tr>{''.join(rows)}</table>{note}</p>"


def _error_types(errors: Mapping[str, Any]) -> str:
    """AP50 points each error type costs, as bars, and per class as a table; counts beside the bars."""
    gained, counts = errors["gained"], errors["counts"]
    kinds = [kind for kind in gained if kind in counts]
    top = max([gained[kind] for kind in gained] + [1e-9])
    rows = "".join(
        f"<tr><th>{_e(kind)}</th><td style='text-align:left'><svg width='{4 + 240 * max(gained[kind], 0) / top:.0f}' height='10'>"
        f"<rect width='100%' height='10' fill='{PALETTE[k % len(PALETTE)]}'/></svg></td>"
        f"<td>{_signed_plain(gained[kind], f'error_types.gained.{kind}')}</td><td><span class='num' data-key='error_types.counts.{kind}'>"
        f"{counts[kind]}</span></td></tr>"
        for k, kind in enumerate(kinds)
    )
    special = " ".join(f"{_e(kind)} {_signed_plain(gained[kind], f'error_types.gained.{kind}')}" for kind in gained if kind not in counts)
    header = "".join(f"<th>{_e(kind)}</th>" for kind in kinds)
    per_class = "".join(
        f"<tr><th>{_e(name)}</th><td>{_num(values['AP50'], f'error_types.per_class.{name}.AP50')}</td>" + "".join(
            f"<td style='background:{_diverging(values.get(kind))}'>{_signed_plain(values.get(kind), f'error_types.per_class.{name}.{kind}')}</td>"
            for kind in kinds
        ) + "</tr>"
        for name, values in errors["per_class"].items()
    )
    return (f"<p class='note'>TIDE's AP50 {_num(errors['AP50'], 'error_types.AP50')} (its own matching, 100 detections per image) and "
            f"the AP50 each type of error costs: Cls wrong class, Loc badly placed (IoU 0.1-0.5), Both, Dupe duplicate, Bkg on "
            f"nothing, Miss objects never detected; also {special}.</p><div class='grid'><div><table><tr><th>error</th><th></th>"
            f"<th>AP50 gained if fixed</th><th>count</th></tr>{rows}</table></div><div><table><tr><th>class</th><th>AP50</th>{header}</tr>"
            f"{per_class}</table></div></div>")


def _signed_plain(value: float | None, key: str) -> str:
    """A gain in AP points, with its report path; n/a where the fix leaves nothing to measure."""
    text = "n/a" if value is None else f"{value:.4f}"
    return f"<span class='num' data-key='{_e(key)}'>{text}</span>"


def _confusion(confusion: Mapping[str, Any]) -> str:
    """The matrix as a table, rows shaded by their share; classes neither true nor predicted anywhere left out."""
    every, full = confusion["labels"], confusion["counts"]
    shown = [k for k in range(len(every)) if k == len(every) - 1 or sum(full[k]) or sum(row[k] for row in full)]
    labels = [every[k] for k in shown]
    counts = [[full[i][j] for j in shown] for i in shown]
    header = "".join(f"<th>{_e(label)}</th>" for label in labels)
    rows = []
    for label, row in zip(labels, counts):
        total = sum(row) or 1
        tds = "".join(
            f"<td style='background:hsl(210,70%,{100 - 45 * value / total:.0f}%)'>"
            f"<span class='num' data-key='confusion.{_e(label)}.{_e(other)}'>{value}</span></td>"
            for other, value in zip(labels, row)
        )
        rows.append(f"<tr><th>{_e(label)}</th>{tds}</tr>")
    return (f"<table><tr><th>true \\ predicted</th>{header}</tr>{''.join(rows)}</table><p class='note'>IoU &ge; "
            f"{confusion['iou_threshold']:g}, score &ge; {confusion['score_threshold']:g}; each row shaded by its share of the row.</p>")


def _svg_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str, x_label: str, y_label: str,
               x_range: tuple[float, float] = (0, 1), y_range: tuple[float, float] = (0, 1), size: tuple[int, int] = (300, 220)) -> str:
    """A line chart as inline SVG: ``series`` of (name, xs, ys)."""
    width, height = size
    left, right, top, bottom = 38, 8, 18, 30
    x0, x1 = x_range
    y0, y1 = y_range
    sx = lambda x: left + (x - x0) / ((x1 - x0) or 1) * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - top - bottom)  # noqa: E731
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='{_e(title)}'>",
           f"<text x='{width / 2}' y='12' text-anchor='middle' font-size='12'>{_e(title)}</text>",
           f"<rect x='{left}' y='{top}' width='{width - left - right}' height='{height - top - bottom}' fill='none' stroke='#999'/>"]
    for k in range(5):
        fy, fx = y0 + (y1 - y0) * k / 4, x0 + (x1 - x0) * k / 4
        out.append(f"<text x='{left - 3}' y='{sy(fy) + 4:.1f}' text-anchor='end' font-size='9'>{fy:.3g}</text>")
        out.append(f"<text x='{sx(fx):.1f}' y='{height - bottom + 11}' text-anchor='middle' font-size='9'>{fx:.3g}</text>")
    out.append(f"<text x='{width / 2}' y='{height - 4}' text-anchor='middle' font-size='10'>{_e(x_label)}</text>")
    out.append(f"<text x='10' y='{height / 2}' font-size='10' transform='rotate(-90 10 {height / 2})' text-anchor='middle'>{_e(y_label)}</text>")
    for k, (name, xs, ys) in enumerate(series):
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y))
        colour = PALETTE[k % len(PALETTE)]
        out.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{points}'/>")
        out.append(f"<text x='{width - right - 4}' y='{top + 12 + 11 * k}' text-anchor='end' font-size='10' fill='{colour}'>{_e(name)}</text>")
    return "".join(out) + "</svg>"


def _curves(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    charts = []
    for name, curve in curves.items():
        charts.append(_svg_chart(
            [("IoU 0.50", curve["recall"], curve["precision50"]), ("IoU .50:.95", curve["recall"], curve["precision"]),
             ("F1 @0.50", curve["recall"], curve["f1"])], name, "recall", "precision / F1",
        ))
    return "<div class='grid'>" + "".join(charts) + "</div>"


def _training(rows: Sequence[Mapping[str, float]]) -> str:
    epochs = [row.get("epoch", k) for k, row in enumerate(rows)]
    charts = []
    for columns, label in ((("mAP", "AP50"), "mAP"), (("loss",), "loss")):
        series = [(c, epochs, [row.get(c, math.nan) for row in rows]) for c in columns if any(c in row for row in rows)]
        values = [v for _, _, ys in series for v in ys if math.isfinite(v)]
        if values:
            top = max(values) if label == "loss" else max(1e-9, max(values))
            charts.append(_svg_chart(series, label, "epoch", label, (min(epochs), max(max(epochs), min(epochs) + 1)), (0, top), (420, 240)))
    return "<div class='grid'>" + "".join(charts) + "</div>"


def _signed(value: float | None, key: str) -> str:
    text = "n/a" if value is None else f"{value:+.4f}"
    return f"<span class='num' data-key='{_e(key)}'>{text}</span>"


def _diverging(value: float | None) -> str:
    """Green where the other run is better, red where worse; 0.1 of AP is full strength."""
    if value is None:
        return "#eee"
    strength = min(abs(value) / 0.1, 1.0)
    return f"hsl({120 if value > 0 else 0},70%,{100 - 25 * strength:.0f}%)"


def _comparison(comparison: Mapping[str, Any]) -> str:
    """The other run minus this one: headline, each breakdown's cells, and the frames that changed most."""
    head = comparison["headline"]
    parts = ["<div class='head'>" + "".join(
        f"<div class='big'><b>{_signed(head[name], f'comparison.headline.{name}')}</b><span>{_e(name)}</span></div>"
        for name in ("mAP", "AP50", "AP75") if name in head) + "</div>"]
    parts.append("<div class='grid'>")
    for attribute, cells in comparison["breakdowns"].items():
        bands = list(cells)
        classes = [name for name in cells[bands[0]] if any(cells[band].get(name) is not None for band in bands)]
        header = "".join(f"<th>{_e(band)}</th>" for band in bands)
        rows = "".join(
            f"<tr><th>{_e(name)}</th>" + "".join(
                f"<td style='background:{_diverging(cells[band].get(name))}'>"
                f"{_signed(cells[band].get(name), f'comparison.breakdowns.{attribute}.{band}.{name}')}</td>" for band in bands
            ) + "</tr>" for name in classes
        )
        parts.append(f"<div><h3>AP difference by class and {_e(attribute)}</h3><table><tr><th>class</th>{header}</tr>{rows}</table></div>")
    parts.append("</div>")
    frames = comparison["frames"]
    if comparison.get("error_types"):
        parts.append("<h3>AP50 each error type costs: difference</h3><p>" + ", ".join(
            f"{_e(kind)} {_signed(value, f'comparison.error_types.{kind}')}" for kind, value in comparison["error_types"].items()) + "</p>")
    if frames:
        rows = "".join(f"<tr><th>{_e(f['file_name'])}</th><td>{f['base']}</td><td>{f['other']}</td><td>{f['difference']:+d}</td></tr>" for f in frames)
        parts.append(f"<h3>Frames where the two disagree most (errors at the operating point)</h3><table><tr><th>frame</th><th>this run</th>"
                     f"<th>{_e(comparison['other'])}</th><th>difference</th></tr>{rows}</table>")
    return "".join(parts)


def _worst(report: Mapping[str, Any], images: Mapping[int, tuple[bytes, bytes]]) -> str:
    tiles, overlays = [], []
    for k, frame in enumerate(report["worst_frames"]):
        caption = (f"{_e(frame['file_name'])}<br>{frame['missed']} missed, {frame['false_positives']} false positives, "
                   f"{frame['confused']} confused ({frame['ground_truth']} objects)")
        pictures = images.get(frame["image_id"])
        if pictures is None:
            tiles.append(f"<div class='thumb'>{caption}</div>")
            continue
        thumb, full = (base64.b64encode(p).decode("ascii") for p in pictures)
        tiles.append(f"<div class='thumb'><a href='#frame{k}'><img alt='frame {k}' src='data:image/jpeg;base64,{thumb}'></a>{caption}</div>")
        overlays.append(f"<a class='full' id='frame{k}' href='#'><img alt='frame {k}, full' src='data:image/jpeg;base64,{full}'></a>")
    if not tiles:
        return "<p>No frame has an error at this operating point.</p>"
    note = "<p class='note'>Ground truth in green, detections above the score threshold in their class colour; click for the full frame.</p>"
    return note + "<div class='grid'>" + "".join(tiles) + "</div>" + "".join(overlays)
