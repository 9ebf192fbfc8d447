"""``darkroom compare RUN_DIR... --out report.html``: one self-contained HTML page comparing runs.

The page has no external resources (styles, script and images are inlined), so it can be mailed or
attached to a paper draft. Sections:

* metrics: every test metric of every run (``results.json``), sortable by clicking a header;
* training curves: each logged series of ``logs/*/metrics.csv`` (loss terms, validation metrics)
  as an inline SVG, one line per run;
* config differences: the resolved config keys whose values differ between runs;
* images: the same test inputs through every run (``samples/<column>/<name>.png`` written by the
  test loop), with the input and, where there is one, the reference.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
            "#bcbd22"]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


class RunInfo:
    """What ``compare`` reads from one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: run directory not found")
        results = self.dir / "results.json"
        self.results = json.loads(results.read_text()) if results.exists() else {}
        self.name = self.dir.name
        self.metrics: dict[str, float] = self.results.get("metrics", {})
        config = self.results.get("config")
        if config is None:
            cfgs = sorted(self.dir.glob("logs/fit_*/config.yaml"))
            if cfgs:
                import yaml

                config = yaml.safe_load(cfgs[0].read_text())
        self.config = _flatten(config or {})
        self.curves = self._read_curves()

    def _read_curves(self) -> dict[str, list[tuple[float, float]]]:
        """``{series: [(step, value), ...]}`` from every fit log of the run, in step order."""
        curves: dict[str, dict[float, float]] = {}
        for path in sorted(self.dir.glob("logs/fit_*/metrics.csv")):
            with path.open() as f:
                for row in csv.DictReader(f):
                    step = row.get("step")
                    if not step:
                        continue
                    for key, value in row.items():
                        if key in ("step", "epoch") or not value or key.endswith("_epoch"):
                            continue
                        try:
                            curves.setdefault(key, {})[float(step)] = float(value)
                        except ValueError:
                            continue
        return {k: sorted(v.items()) for k, v in curves.items()}

    def samples(self) -> dict[str, dict[str, Path]]:
        """``{column: {name: path}}`` of the saved test samples."""
        root = self.dir / "samples"
        if not root.is_dir():
            return {}
        return {c.name: {p.stem: p for p in sorted(c.glob("*.png"))} for c in sorted(root.iterdir()) if c.is_dir()}


def _data_uri(path: Path, height: int = 160) -> str:
    img = Image.open(path).convert("RGB")
    if img.height > height:
        img = img.resize((max(1, round(img.width * height / img.height)), height), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)  # thumbnails: JPEG keeps a 50-run page at a few MiB
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _svg_curve(series: str, runs: list[RunInfo], width: int = 420, height: int = 220) -> str:
    pts = [(r, r.curves.get(series, [])) for r in runs]
    allv = [v for _, c in pts for _, v in c if np.isfinite(v)]
    alls = [s for _, c in pts for s, _ in c]
    if not allv:
        return ""
    x0, x1 = min(alls), max(alls) or 1
    y0, y1 = min(allv), max(allv)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    m = 36

    def sx(s: float) -> float:
        return m + (s - x0) / ((x1 - x0) or 1) * (width - m - 8)

    def sy(v: float) -> float:
        return height - m + (v - y0) / (y1 - y0) * -(height - m - 10)

    lines = []
    for i, (_run, curve) in enumerate(pts):
        if not curve:
            continue
        colour = _COLOURS[i % len(_COLOURS)]
        coords = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in curve if np.isfinite(v))
        if len(curve) == 1:
            s, v = curve[0]
            lines.append(f'<circle cx="{sx(s):.1f}" cy="{sy(v):.1f}" r="3" fill="{colour}"/>')
        else:
            lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
    axes = (f'<line x1="{m}" y1="{height - m}" x2="{width - 8}" y2="{height - m}" stroke="#888"/>'
            f'<line x1="{m}" y1="10" x2="{m}" y2="{height - m}" stroke="#888"/>'
            f'<text x="{m}" y="{height - m + 14}" font-size="10">{x0:g}</text>'
            f'<text x="{width - 40}" y="{height - m + 14}" font-size="10">{x1:g} steps</text>'
            f'<text x="2" y="{height - m}" font-size="10">{y0:.3g}</text>'
            f'<text x="2" y="18" font-size="10">{y1:.3g}</text>')
    return (f'<figure class="curve"><svg width="{width}" height="{height}" role="img" aria-label="{html.escape(series)}">'
            f'{axes}{"".join(lines)}</svg><figcaption>{html.escape(series)}</figcaption></figure>')


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:22px}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3;cursor:pointer}td:first-child,th:first-child{text-align:left}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px}
.curves{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;text-align:center}
.grid td{text-align:center;vertical-align:top}.grid img{display:block;max-height:160px}.diff td{font-family:monospace}
"""

_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0], rows = Array.from(body.rows);
    var asc = th.dataset.order !== 'asc'; th.dataset.order = asc ? 'asc' : 'desc';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
function markLoaded(){
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function(i){ return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesLoaded = ok + '/' + imgs.length;
  document.body.dataset.metricRows = document.querySelectorAll('#metrics tbody tr').length;
}
window.addEventListener('load', markLoaded); markLoaded();
"""


def build_report(run_dirs: list[Path], title: str | None = None, max_samples: int = 6) -> str:
    runs = [RunInfo(d) for d in run_dirs]
    if not runs:
        raise ValueError("compare: give at least one run directory")
    title = title or f"Darkroom comparison of {len(runs)} runs"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>Generated {time.strftime('%Y-%m-%d %H:%M')} from: "
             + ", ".join(f"<code>{html.escape(str(r.dir))}</code>" for r in runs) + "</p>"]
    legend = "".join(f'<span><i style="background:{_COLOURS[i % len(_COLOURS)]}"></i>{html.escape(r.name)}</span>'
                     for i, r in enumerate(runs))
    # metrics
    keys = sorted({k for r in runs for k in r.metrics})
    parts.append("<h2>Test metrics</h2><p>Click a column header to sort.</p><table id='metrics' class='sortable'>"
                 "<thead><tr><th>run</th><th>paper</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys)
                 + "</tr></thead><tbody>")
    for r in runs:
        cells = "".join(f"<td data-v='{r.metrics[k]}'>{r.metrics[k]:.4f}</td>" if k in r.metrics else "<td>–</td>"
                        for k in keys)
        parts.append(f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(str(r.results.get('paper', '')))}</td>"
                     f"{cells}</tr>")
    parts.append("</tbody></table>")
    # curves
    # validation curves first, then training; test metrics are single points and live in the table above
    series = sorted({s for r in runs for s, c in r.curves.items() if not s.startswith("test/") and len(c) > 1},
                    key=lambda s: (not s.startswith("val/"), s))
    if series:
        parts.append(f"<h2>Training curves</h2><div class='legend'>{legend}</div><div class='curves'>")
        parts += [_svg_curve(s, runs) for s in series]
        parts.append("</div>")
    # config differences
    all_keys = sorted({k for r in runs for k in r.config})
    skip = ("run.name", "ckpt_path")
    diff = [k for k in all_keys if k not in skip and len({json.dumps(r.config.get(k), default=str) for r in runs}) > 1]
    parts.append("<h2>Config differences</h2>")
    if diff:
        parts.append("<table class='diff'><thead><tr><th>key</th>" + "".join(f"<th>{html.escape(r.name)}</th>"
                                                                             for r in runs) + "</tr></thead><tbody>")
        for k in diff:
            parts.append(f"<tr><td>{html.escape(k)}</td>" + "".join(
                f"<td>{html.escape(json.dumps(r.config.get(k), default=str))}</td>" for r in runs) + "</tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p>The runs share one configuration.</p>")
    # images
    samples = [r.samples() for r in runs]
    names = sorted({n for s in samples for n in s.get("output", {})})[:max_samples]
    parts.append("<h2>Test images</h2>")
    if names:
        head = "<th>input</th>" + "".join(f"<th>{html.escape(r.name)}</th>" for r in runs) + "<th>reference</th>"
        parts.append(f"<table class='grid'><thead><tr><th>image</th>{head}</tr></thead><tbody>")
        for n in names:
            first = next((s for s in samples if n in s.get("input", {})), {})
            cells = [first.get("input", {}).get(n)] + [s.get("output", {}).get(n) for s in samples]
            cells.append(next((s["target"][n] for s in samples if n in s.get("target", {})), None))
            row = "".join(f"<td><img alt='{html.escape(n)}' src='{_data_uri(p)}'></td>" if p else "<td>–</td>"
                          for p in cells)
            parts.append(f"<tr><td>{html.escape(n)}</td>{row}</tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p>No saved test samples (run <code>darkroom test</code> first).</p>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="darkroom compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (runs/<paper>/<name>)")
    parser.add_argument("--out", type=Path, default=Path("report.html"))
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(build_report(args.runs, args.title))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
