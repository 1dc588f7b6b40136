"""The quality Data Docs: static HTML over every run kept in `quality/`, readable with no network.

Ours rather than GX's (GX Core 1.x), because GX's cannot be made true:
- their Status is GX's `success`, false as soon as any expectation misses, whatever its
  severity: a run the CLI passes with warnings reads "Failed" (`_render_validation_header`);
- they load 14 stylesheets, scripts and images from CDNs (Bootstrap, bootstrap-table, jQuery,
  Popper, Font Awesome, Vega, a datepicker...) and draw the index table with bootstrap-table, so
  offline the pages are unstyled and the table is empty; bootstrap-table and Vega ship in no
  PyPI package that could vendor them;
- an ephemeral context knows only the run at hand, and a build for that run's results never
  writes the suite pages its links point to.

Here: one index of every run (id, time, verdict, counts), a page per run with each suite and each
expectation, and a page per suite with its expectations and their history. Inline CSS, no script,
relative links only; the verdict is `QualityReport.verdict`, the CLI's.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataops.quality.config import SuiteDocument, shown
from dataops.quality.suites import ExpectationOutcome, QualityReport, verdict_of

DOCS_DIR = "data_docs"
_VERDICT_CLASS = {"passed": "ok", "passed with warnings": "warn", "failed": "fail"}
_CSS = """
:root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --fail: #cf222e; --line: #d0d7de;
  --muted: #57606a; }
@media (prefers-color-scheme: dark) {
  :root { --ok: #3fb950; --warn: #d29922; --fail: #f85149; --line: #30363d; --muted: #8b949e; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
  max-width: 80rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: .2rem 0 .6rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .3rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1.2rem; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
td:first-child { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict, .result { font-weight: 600; white-space: nowrap; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .fail { color: var(--fail); }
.muted, nav { color: var(--muted); } nav { margin-bottom: .8rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 90%; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; margin: .4rem 0 1rem; }
dt { color: var(--muted); } dd { margin: 0; }
"""


def _slug(name: str) -> str:
    """A file name for `name` that needs no URL quoting; a hash keeps two names that clean to the
    same letters apart."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "_"
    if cleaned == name:
        return cleaned
    return f"{cleaned}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _link(href: str, text: str) -> str:
    return f'<a href="{_e(href)}">{_e(text)}</a>'


def _verdict(verdict: str) -> str:
    return f'<span class="verdict {_VERDICT_CLASS[verdict]}">{_e(verdict)}</span>'


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value if isinstance(value, str) else json.dumps(value, default=str)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], numeric: frozenset[int] = frozenset()) -> str:
    """Cells are HTML already (escaped by the caller); `numeric` column indexes align right."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _page(title: str, body: str, up: str | None) -> str:
    nav = f"<nav>{_link(up, 'all runs')}</nav>\n" if up else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{nav}{body}</body>\n</html>\n"
    )


def _counts(outcomes: list[ExpectationOutcome]) -> list[str]:
    return [
        str(sum(1 for o in outcomes if o.success)),
        str(sum(1 for o in outcomes if o.level == "warn")),
        str(sum(1 for o in outcomes if o.level == "error")),
    ]


def _result(outcome: ExpectationOutcome) -> str:
    if outcome.error:
        word, css = "could not run", "fail"
    else:
        word, css = {None: ("pass", "ok"), "warn": ("warn", "warn"), "error": ("fail", "fail")}[outcome.level]
    return f'<span class="result {css}">{word}</span>'


def _unexpected(outcome: ExpectationOutcome) -> str:
    if outcome.unexpected_count is None:
        return ""
    return f"{outcome.unexpected_count:,} of {outcome.element_count or 0:,}"


def _arguments(expectation: dict[str, Any]) -> str:
    kwargs = {k: v for k, v in (expectation.get("kwargs") or {}).items() if k != "column"}
    return f"<code>{_e(json.dumps(kwargs, default=str))}</code>" if kwargs else ""


class _Site:
    """The pages of one build, from the history and the current suite documents."""

    def __init__(
        self, reports: list[QualityReport], problems: list[tuple[str, str]], suites: dict[str, SuiteDocument]
    ) -> None:
        self.reports = reports
        self.problems = problems
        self.current = suites
        # Every suite a page may link to: those in gx/ now, and those only in the history.
        self.suite_names = list(suites) + sorted({o.suite for r in reports for o in r.outcomes} - set(suites))

    @staticmethod
    def run_page(report: QualityReport) -> str:
        assert report.results_path is not None
        return f"runs/{_slug(report.results_path.stem)}.html"

    @staticmethod
    def suite_page(name: str) -> str:
        return f"suites/{_slug(name)}.html"

    def pages(self) -> dict[str, str]:
        pages = {"index.html": self.index()}
        pages.update({self.run_page(r): self.run(r) for r in self.reports})
        pages.update({self.suite_page(name): self.suite(name) for name in self.suite_names})
        return pages

    def index(self) -> str:
        target = next((r.target for r in self.reports if r.target), "")
        title = f"Data quality{': ' + target if target else ''}"
        rows = [
            [
                _link(self.run_page(r), r.run_id),
                _e(_when(r.run_time)),
                _e(r.target),
                _e(r.checkpoint),
                ", ".join(_link(self.suite_page(s), s) for s in dict.fromkeys(o.suite for o in r.outcomes)),
                _verdict(r.verdict),
                *_counts(r.outcomes),
            ]
            for r in self.reports
        ]
        body = f'<h1>{_e(title)}</h1>\n<p class="muted">{len(self.reports)} runs, newest first.</p>\n'
        body += (
            _table(
                ["run", "time", "target", "checkpoint", "suites", "verdict", "passed", "warned", "failed"],
                rows,
                numeric=frozenset({6, 7, 8}),
            )
            if rows
            else "<p>No quality run has been kept yet: run <code>dataops quality</code>.</p>\n"
        )
        suite_rows = []
        for name in self.suite_names:
            runs = self._runs_of(name)
            last = verdict_of([o for o in runs[0].outcomes if o.suite == name]) if runs else None
            suite_rows.append(
                [
                    _link(self.suite_page(name), name),
                    _e(self._definition(name)[0].get("meta", {}).get("model", "")),
                    str(len(runs)),
                    _verdict(last) if last else '<span class="muted">never run</span>',
                ]
            )
        body += "<h2>Suites</h2>\n" + _table(["suite", "mart", "runs", "last verdict"], suite_rows, frozenset({2}))
        if self.problems:
            body += "<h2>Records that could not be read</h2>\n" + _table(
                ["file", "problem"], [[_e(name), _e(problem)] for name, problem in self.problems]
            )
        return _page(title, body, None)

    def run(self, report: QualityReport) -> str:
        body = (
            f"<h1>Run {_e(report.run_id)}</h1>\n<dl>"
            f"<dt>verdict</dt><dd>{_verdict(report.verdict)}</dd>"
            f"<dt>time</dt><dd>{_e(_when(report.run_time))}</dd>"
            f"<dt>target</dt><dd>{_e(report.target)}</dd>"
            f"<dt>checkpoint</dt><dd>{_e(report.checkpoint)}</dd>"
            f"<dt>expectations</dt><dd>{report.passed} passed, {report.warned} warned, "
            f"{report.failed} failed of {len(report.outcomes)}</dd></dl>\n"
        )
        for suite in dict.fromkeys(o.suite for o in report.outcomes):
            outcomes = [o for o in report.outcomes if o.suite == suite]
            body += (
                f"<h2>{_link('../' + self.suite_page(suite), suite)} on {_e(outcomes[0].model)}: "
                f"{_verdict(verdict_of(outcomes))}</h2>\n"
            )
            body += _table(
                ["expectation", "column", "severity", "result", "observed", "unexpected", "examples"],
                [
                    [
                        _e(o.expectation),
                        _e(o.column or ""),
                        _e(o.severity),
                        _result(o),
                        _e(f"could not run: {o.error}" if o.error else _value(o.observed)),
                        _e(_unexpected(o)),
                        _e(", ".join(repr(e) for e in o.examples)),
                    ]
                    for o in outcomes
                ],
            )
        return _page(f"Run {report.run_id}", body, "../index.html")

    def _runs_of(self, suite: str) -> list[QualityReport]:
        return [r for r in self.reports if any(o.suite == suite for o in r.outcomes)]

    def _definition(self, name: str) -> tuple[dict[str, Any], str]:
        """The suite's document and where it comes from: gx/ now, else the last run that kept it."""
        if name in self.current:
            return self.current[name].document, f"defined in {shown(self.current[name].path)}"
        for report in self._runs_of(name):
            if name in report.definitions:
                return report.definitions[name], f"no longer in gx/; as it ran in {report.run_id}"
        return {}, "no longer in gx/, and no run kept its definition"

    def suite(self, name: str) -> str:
        document, source = self._definition(name)
        meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
        body = f"<h1>Suite {_e(name)}</h1>\n<dl><dt>mart</dt><dd>{_e(meta.get('model', ''))}</dd>"
        body += f"<dt>source</dt><dd>{_e(source)}</dd>"
        if meta.get("notes"):
            body += f"<dt>notes</dt><dd>{_e(meta['notes'])}</dd>"
        body += "</dl>\n<h2>Expectations</h2>\n" + _table(
            ["expectation", "column", "arguments", "severity"],
            [
                [
                    _e(x.get("type", "")),
                    _e((x.get("kwargs") or {}).get("column", "")),
                    _arguments(x),
                    _e(x.get("severity", "critical")),
                ]
                for x in document.get("expectations", [])
                if isinstance(x, dict)
            ],
        )
        history = [
            [
                _link("../" + self.run_page(r), r.run_id),
                _e(_when(r.run_time)),
                _verdict(verdict_of(outcomes)),
                *_counts(outcomes),
            ]
            for r in self._runs_of(name)
            for outcomes in [[o for o in r.outcomes if o.suite == name]]
        ]
        body += "<h2>Runs</h2>\n" + (
            _table(["run", "time", "verdict", "passed", "warned", "failed"], history, frozenset({3, 4, 5}))
            if history
            else "<p>Not run yet.</p>\n"
        )
        return _page(f"Suite {name}", body, "../index.html")


def read_history(quality_dir: Path) -> tuple[list[QualityReport], list[tuple[str, str]]]:
    """Every run record in `quality_dir`, newest first, and the files that are not readable records
    (listed on the index rather than dropped without a word)."""
    reports, problems = [], []
    for path in sorted(quality_dir.glob("*.json")):
        try:
            report = QualityReport.from_record(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
            problems.append((path.name, " ".join(str(error).split())))
            continue
        report.results_path = path
        reports.append(report)
    oldest = datetime.min.replace(tzinfo=UTC)
    reports.sort(key=lambda r: (r.run_time or oldest, r.run_id), reverse=True)
    return reports, problems


def build_site(quality_dir: Path, suites: dict[str, SuiteDocument]) -> Path:
    """Draw every page into a fresh folder, then swap it in for `quality_dir/data_docs`: no reader
    sees half a site, and nothing of an older layout (GX's) lingers. Returns the index."""
    reports, problems = read_history(quality_dir)
    site = quality_dir / DOCS_DIR
    staging = quality_dir / f".{DOCS_DIR}.{os.getpid()}.partial"
    retired = quality_dir / f".{DOCS_DIR}.{os.getpid()}.old"
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    for relative, text in _Site(reports, problems, suites).pages().items():
        page = staging / relative
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(text, encoding="utf-8")
    if site.exists():
        site.rename(retired)
    staging.rename(site)
    shutil.rmtree(retired, ignore_errors=True)
    return site / "index.html"
