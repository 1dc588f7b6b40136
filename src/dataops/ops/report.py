"""`dataops report`: one self-contained HTML page of a target, for the team lead's Monday.

Everything is inline (CSS and SVG drawn here; no script, no font, no CDN), so the file opens
offline, from a mail attachment or a CI artifact. Every string that comes from the history (names,
messages, titles) is escaped. The per-run charts show the newest `MAX_RUNS_CHARTED` pipeline runs
of the window: a chart of more points is no more legible, and reading their documents (stages,
nodes, row counts) is what bounds the report's time, whatever the size of the history."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

from dataops.core.config import Settings
from dataops.history.records import PIPELINE_KINDS_SQL, IncidentRecord, RunRecord
from dataops.history.store import HistoryStore, stored_moment
from dataops.ops.anomalies import training_history
from dataops.ops.metrics import MetricsReport, compute_metrics
from dataops.sources.contract import SOURCE_TABLES_BY_NAME

MAX_RUNS_CHARTED = 120
CHECK_KINDS = ("test", "unit_test", "expectation", "anomaly")
LEVEL_COLOURS = {"ok": "#2e7d32", "warn": "#f9a825", "error": "#c62828"}
STAGE_COLOURS = ["#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#558b2f", "#ad1457", "#4e342e", "#37474f"]
WIDTH, HEIGHT, PAD = 720, 220, 44


@dataclass(frozen=True)
class ReportData:
    target: str
    since: datetime
    runs: list[RunRecord]  # oldest first
    metrics: MetricsReport
    incidents: list[IncidentRecord]
    bands: dict[str, tuple[float, float]]  # mart -> (low, high) of its anomaly band


def collect(store: HistoryStore, settings: Settings, window: timedelta, now: datetime | None = None) -> ReportData:
    until = now or datetime.now(UTC)
    since = until - window
    runs = _charted_runs(store, settings.target, since)
    metrics = compute_metrics(store, settings.target, window, settings.artifacts_dir, now=until)
    bands: dict[str, tuple[float, float]] = {}
    if runs:
        latest = runs[-1]
        training = training_history(store, settings.target, latest.run_id, latest.started_at, settings.anomalies)
        for relation, rows in training.rows.items():
            if relation not in SOURCE_TABLES_BY_NAME and len(rows) >= 2:
                bands[relation] = _band(rows, settings)
    return ReportData(settings.target, since, runs, metrics, store.incidents(settings.target, since), bands)


def _band(rows: Sequence[float], settings: Settings) -> tuple[float, float]:
    """mean ± sensitivity·stddev, widened to the smallest change the anomaly check counts (its
    floor on the stddev): the band outside which a mart's rows are an anomaly."""
    config = settings.anomalies
    mean, stddev = statistics.fmean(rows), statistics.stdev(rows)
    spread = config.sensitivity * stddev
    return (
        mean - max(spread, config.min_drop_percent / 100 * abs(mean)),
        mean + max(spread, config.min_spike_percent / 100 * abs(mean)),
    )


def _charted_runs(store: HistoryStore, target: str, since: datetime) -> list[RunRecord]:
    with store.reading() as db:
        if db is None:
            return []
        rows = db.execute(
            f"select run_id, document from dataops_runs where target = ? and kind in ({PIPELINE_KINDS_SQL}) "
            "and started_at >= ? and finished_at is not null order by started_at desc, run_id desc limit ?",
            [target, stored_moment(since), MAX_RUNS_CHARTED],
        )
    return [RunRecord.from_dict(json.loads(str(document))) for _, document in reversed(rows)]


def write_report(store: HistoryStore, settings: Settings, window: timedelta, path: Path) -> Path:
    page = render(collect(store, settings, window))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# The page ----------------------------------------------------------------------------------------


def render(data: ReportData) -> str:
    latest = data.runs[-1] if data.runs else None
    sections = [
        _section("DataOps metrics", _metrics_table(data.metrics)),
        _section("Run duration by stage", _stage_chart(data.runs)),
        _section("Checks passed, warned and failed", _checks_chart(data.runs)),
        _section("Data quality score", _quality_chart(data.runs)),
        _section("Freshness per source (latest run)", _freshness_chart(latest)),
        _section("Rows per mart, with the anomaly band", _marts_charts(data.runs, data.bands)),
        _section("Incidents", _incidents_table(data.incidents)),
        _section("Latest run's findings", _findings(latest)),
    ]
    heading = f"{escape(data.target)}: {len(data.runs)} pipeline runs since {data.since:%Y-%m-%d %H:%M} UTC"
    status = (
        f"latest run <b>{escape(latest.run_id)}</b>: <span class='status {escape(latest.status)}'>"
        f"{escape(latest.status)}</span>"
        if latest
        else "no pipeline run in the window"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>dataops report: "
        f"{escape(data.target)}</title><style>{_CSS}</style></head><body><header><h1>DataOps report</h1>"
        f"<p>{heading} · {status}</p></header><main>{''.join(sections)}</main>"
        f"<footer>Written by dataops report at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the run history.</footer>"
        "</body></html>\n"
    )


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1f2933}
header{background:#1f2933;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(760px,1fr));gap:18px;padding:18px 32px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:14px 18px}
h2{font-size:17px;margin:0 0 10px}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #e4e7eb;vertical-align:top}th{color:#52606d}
.status{padding:1px 8px;border-radius:10px;color:#fff;background:#52606d}.passed,.ok{background:#2e7d32}
.warned,.warn{background:#f9a825;color:#1f2933}.failed,.error,.crashed{background:#c62828}
.na{color:#7b8794}svg{max-width:100%;height:auto}svg text{font-size:11px;fill:#52606d}
.empty{color:#7b8794;font-style:italic}footer{color:#7b8794;padding:0 32px 18px;font-size:13px}
.legend span{display:inline-block;margin-right:12px;font-size:13px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _empty(what: str) -> str:
    return f"<p class='empty'>{escape(what)}</p>"


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    return (
        "<div class='legend'>"
        + "".join(f"<span><i style='background:{colour}'></i>{escape(name)}</span>" for name, colour in entries)
        + "</div>"
    )


# Charts: a plot area, its axes and marks (each mark has class `mark`) -------------------------------


@dataclass(frozen=True)
class _Frame:
    top: float

    @property
    def plot_height(self) -> float:
        return HEIGHT - 2 * PAD

    def y(self, value: float, low: float = 0.0) -> float:
        span = (self.top - low) or 1.0
        return HEIGHT - PAD - (value - low) / span * self.plot_height

    def x(self, index: int, count: int) -> float:
        return PAD + (index + 0.5) * (WIDTH - 2 * PAD) / max(count, 1)


def _svg(title: str, body: str, frame: _Frame, low: float = 0.0, unit: str = "") -> str:
    ticks = "".join(
        f"<line x1='{PAD}' x2='{WIDTH - PAD}' y1='{frame.y(v, low):.1f}' y2='{frame.y(v, low):.1f}' stroke='#e4e7eb'/>"
        f"<text x='{PAD - 4}' y='{frame.y(v, low) + 4:.1f}' text-anchor='end'>{_short(v)}{unit}</text>"
        for v in (low + (frame.top - low) * share for share in (0, 0.5, 1))
    )
    return (
        f"<svg class='chart' role='img' aria-label='{escape(title)}' viewBox='0 0 {WIDTH} {HEIGHT}' "
        f"xmlns='http://www.w3.org/2000/svg'><title>{escape(title)}</title>{ticks}{body}</svg>"
    )


def _short(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.3g}"


def _run_axis(runs: Sequence[RunRecord]) -> str:
    if not runs:
        return ""
    first, last = runs[0].started_at, runs[-1].started_at
    return (
        f"<text x='{PAD}' y='{HEIGHT - PAD + 16}'>{first:%m-%d %H:%M}</text>"
        f"<text x='{WIDTH - PAD}' y='{HEIGHT - PAD + 16}' text-anchor='end'>{last:%m-%d %H:%M}</text>"
    )


def _stacked(runs: Sequence[RunRecord], stacks: list[tuple[str, str, list[float]]], title: str, unit: str) -> str:
    """One bar per run, its parts stacked in order; each part's tooltip names the run and part."""
    totals = [sum(values[i] for _, _, values in stacks) for i in range(len(runs))]
    frame = _Frame(max(totals, default=0.0) or 1.0)
    width = max((WIDTH - 2 * PAD) / max(len(runs), 1) * 0.7, 1.0)
    marks = []
    for index, run in enumerate(runs):
        base = 0.0
        for name, colour, values in stacks:
            value = values[index]
            if value <= 0:
                continue
            top, bottom = frame.y(base + value), frame.y(base)
            marks.append(
                f"<rect class='mark' x='{frame.x(index, len(runs)) - width / 2:.1f}' y='{top:.1f}' "
                f"width='{width:.1f}' height='{max(bottom - top, 0.5):.1f}' fill='{colour}'>"
                f"<title>{escape(run.run_id)} {escape(name)}: {value:g}{escape(unit)}</title></rect>"
            )
            base += value
    return _svg(title, "".join(marks) + _run_axis(runs), frame, unit=unit)


def _stage_chart(runs: Sequence[RunRecord]) -> str:
    names = list(dict.fromkeys(stage.name for run in runs for stage in run.stages))
    if not names:
        return _empty("no stage recorded in the window")
    colours = {name: STAGE_COLOURS[i % len(STAGE_COLOURS)] for i, name in enumerate(names)}
    stacks = [
        (name, colours[name], [sum(s.seconds for s in run.stages if s.name == name) for run in runs]) for name in names
    ]
    return _legend([(n, colours[n]) for n in names]) + _stacked(runs, stacks, "Run duration by stage", "s")


def _checks_chart(runs: Sequence[RunRecord]) -> str:
    levels = (("passed", "ok"), ("warned", "warn"), ("failed", "error"))
    stacks = [
        (shown, LEVEL_COLOURS[level], [float(sum(run.count(kind, level) for kind in CHECK_KINDS)) for run in runs])
        for shown, level in levels
    ]
    if not any(any(values) for _, _, values in stacks):
        return _empty("no check ran in the window")
    return _legend([(shown, LEVEL_COLOURS[level]) for shown, level in levels]) + _stacked(runs, stacks, "Checks", "")


def _line(
    runs: Sequence[RunRecord], values: list[float | None], title: str, band: tuple[float, float] | None = None
) -> str:
    shown = [v for v in values if v is not None]
    if not shown:
        return _empty(f"{title}: nothing recorded in the window")
    edges = [*shown, *(band or ())]
    low, high = min(edges), max(edges)
    margin = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
    low, high = low - margin, high + margin
    frame = _Frame(high)
    points = [(frame.x(i, len(runs)), frame.y(v, low), v, runs[i]) for i, v in enumerate(values) if v is not None]
    body = ""
    if band is not None:
        top, bottom = frame.y(band[1], low), frame.y(band[0], low)
        body += (
            f"<rect class='band' x='{PAD}' y='{top:.1f}' width='{WIDTH - 2 * PAD}' height='{bottom - top:.1f}' "
            f"fill='#1565c0' fill-opacity='0.10'><title>anomaly band {band[0]:,.0f} to {band[1]:,.0f}</title></rect>"
        )
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
    body += f"<polyline points='{path}' fill='none' stroke='#1565c0' stroke-width='2'/>"
    body += "".join(
        f"<circle class='mark' cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{_point_colour(v, band)}'>"
        f"<title>{escape(run.run_id)}: {v:,.4g}</title></circle>"
        for x, y, v, run in points
    )
    return _svg(title, body + _run_axis(runs), frame, low=low)


def _point_colour(value: float, band: tuple[float, float] | None) -> str:
    outside = band is not None and not band[0] <= value <= band[1]
    return LEVEL_COLOURS["error"] if outside else "#1565c0"


def _quality_chart(runs: Sequence[RunRecord]) -> str:
    return _line(runs, [run.quality_score for run in runs], "Data quality score")


def _freshness_chart(latest: RunRecord | None) -> str:
    sources = [n for n in (latest.nodes if latest else []) if n.kind == "source" and n.age_seconds is not None]
    if not sources:
        return _empty("no freshness check in the latest run")
    hours = [(n.name.removeprefix("freshness of "), (n.age_seconds or 0) / 3600, n.level) for n in sources]
    bar, gap = 18, 6
    label = 200
    longest = max(h for _, h, _ in hours) or 1.0
    height = len(hours) * (bar + gap) + 24
    marks = "".join(
        f"<text x='{label - 6}' y='{i * (bar + gap) + 13}' text-anchor='end'>{escape(name)}</text>"
        f"<rect class='mark' x='{label}' y='{i * (bar + gap)}' height='{bar}' "
        f"width='{max(h / longest * (WIDTH - label - 90), 1):.1f}' fill='{LEVEL_COLOURS.get(level, '#52606d')}'>"
        f"<title>{escape(name)}: {_age(h)} old ({escape(level)})</title></rect>"
        f"<text x='{label + max(h / longest * (WIDTH - label - 90), 1) + 6:.1f}' y='{i * (bar + gap) + 13}'>"
        f"{_age(h)}</text>"
        for i, (name, h, level) in enumerate(hours)
    )
    return (
        f"<svg class='chart' role='img' aria-label='Freshness per source' viewBox='0 0 {WIDTH} {height}' "
        f"xmlns='http://www.w3.org/2000/svg'><title>Freshness per source</title>{marks}</svg>"
    )


def _age(hours: float) -> str:
    return f"{hours:,.1f} h" if hours < 48 else f"{hours / 24:,.0f} days"


def _marts_charts(runs: Sequence[RunRecord], bands: dict[str, tuple[float, float]]) -> str:
    marts = sorted({name for run in runs for name in run.row_counts if name not in SOURCE_TABLES_BY_NAME})
    if not marts:
        return _empty("no mart row counts in the window")
    charts = []
    for mart in marts:
        band = bands.get(mart)
        caption = f" (band {band[0]:,.0f} to {band[1]:,.0f})" if band else " (too few training runs for a band)"
        values: list[float | None] = [float(run.row_counts[mart]) if mart in run.row_counts else None for run in runs]
        charts.append(f"<h3>{escape(mart)}{escape(caption)}</h3>{_line(runs, values, f'Rows of {mart}', band)}")
    return "".join(charts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return _empty(empty)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_table(report: MetricsReport) -> str:
    rows = []
    for metric in report.metrics:
        if not metric.available:
            value = f"<span class='na'>not available: needs {escape(metric.needs)}</span>"
        else:
            value = escape(_metric_value(metric.value, metric.unit))
        rows.append([escape(metric.name.replace("_", " ")), value, escape(metric.definition)])
    return _table(["metric", "value", "definition"], rows, "no metrics")


def _metric_value(value: float | None, unit: str) -> str:
    if value is None:
        return "none in the window"
    if unit == "ratio":
        return f"{value:.0%}"
    if unit == "seconds":
        return f"{value:,.1f} s" if value < 3600 else f"{value / 3600:,.1f} h"
    if unit == "0..1":
        return f"{value:.3f}"
    return f"{value:,.3g} {unit}"


def _incidents_table(incidents: Sequence[IncidentRecord]) -> str:
    rows = [
        [
            escape(i.incident_id),
            f"<span class='status {escape(i.severity)}'>{escape(i.severity)}</span>",
            escape(i.title),
            escape(f"{i.opened_at:%Y-%m-%d %H:%M}"),
            escape(f"{i.resolved_at:%Y-%m-%d %H:%M}" if i.resolved_at else "open"),
        ]
        for i in incidents
    ]
    return _table(["incident", "severity", "title", "opened", "resolved"], rows, "no incident in the window")


def _findings(latest: RunRecord | None) -> str:
    if latest is None:
        return _empty("no pipeline run in the window")
    findings = [
        [f"<span class='status {escape(f.level)}'>{escape(f.level)}</span>", escape(f.check), escape(f.message)]
        for f in latest.findings
    ]
    nodes = [
        [f"<span class='status {escape(n.level)}'>{escape(n.level)}</span>", escape(n.name), escape(n.message)]
        for n in sorted(latest.nodes, key=lambda n: n.name)
        if n.level in ("warn", "error")
    ]
    return _table(["level", "check", "message"], findings, "no finding: every check passed") + (
        "<h3>Warning and failing nodes</h3>" + _table(["level", "node", "message"], nodes, "") if nodes else ""
    )
