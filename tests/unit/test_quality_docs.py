"""The quality Data Docs, drawn from run records on disk: they agree with the verdict, carry the
run id, keep every run, link only to pages that exist, and load nothing from the network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from dataops.quality.config import suite_documents
from dataops.quality.docs import build_site
from dataops.quality.suites import ExpectationOutcome, QualityReport

STARTED = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


class _Page(HTMLParser):
    """What a test needs of a page: every URL it refers to, its verdict texts, its table rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.verdicts: list[str] = []
        self.rows = 0
        self.tags: set[str] = set()
        self._in_verdict = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.rows += tag == "tr"
        self.urls += [(tag, value) for name, value in attrs if name in ("href", "src", "action") and value]
        self._in_verdict = "verdict" in (dict(attrs).get("class") or "").split()

    def handle_data(self, data: str) -> None:
        if self._in_verdict:
            self.verdicts.append(data)
            self._in_verdict = False


def _outcome(suite: str, expectation: str, column: str | None, **result: object) -> ExpectationOutcome:
    model = "customer_analytics" if suite == "customer_quality_suite" else "fct_orders"
    severity = str(result.pop("severity", "critical"))
    return ExpectationOutcome(suite, model, expectation, column, severity, **result)  # type: ignore[arg-type]


def _keep(quality_dir: Path, report: QualityReport) -> None:
    """A run record as `validate` writes it."""
    quality_dir.mkdir(parents=True, exist_ok=True)
    (quality_dir / f"{report.run_id}.json").write_text(json.dumps(report.to_record(), default=str), encoding="utf-8")


def _run(run_id: str, minutes: int, email_ok: bool, totals_ok: bool = True) -> QualityReport:
    suites = suite_documents()
    outcomes = [
        _outcome("customer_quality_suite", "expect_table_row_count_to_be_between", None, success=True, observed=19820),
        _outcome(
            "customer_quality_suite",
            "expect_column_values_to_match_regex",
            "email",
            severity="warning",
            success=email_ok,
            unexpected_count=0 if email_ok else 43,
            element_count=19119,
            examples=() if email_ok else ("françois0@adventure-works.com",),
        ),
        _outcome(
            "order_quality_suite",
            "expect_column_values_to_be_between",
            "total_due",
            success=totals_ok,
            unexpected_count=0 if totals_ok else 7,
            element_count=31465,
            examples=() if totals_ok else ("-1",),
        ),
    ]
    return QualityReport(
        checkpoint="daily_quality_checkpoint",
        outcomes=outcomes,
        run_id=run_id,
        run_time=STARTED + timedelta(minutes=minutes),
        target="dev",
        definitions={name: suite.document for name, suite in suites.items()},
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """Two runs kept: a warning-only one, then a failed one; the site drawn over both."""
    quality_dir = tmp_path / "quality"
    _keep(quality_dir, _run("20260301T060000Z-warned", 0, email_ok=False))
    _keep(quality_dir, _run("20260301T070000Z-failed", 60, email_ok=True, totals_ok=False))
    index = build_site(quality_dir, suite_documents())
    assert index == quality_dir / "data_docs" / "index.html"
    return index.parent


def _pages(site: Path) -> dict[Path, _Page]:
    pages = {path: _Page(path.read_text(encoding="utf-8")) for path in sorted(site.rglob("*.html"))}
    assert len(pages) == 1 + 2 + 2  # the index, a page per run, a page per suite
    return pages


def test_a_warning_only_run_reads_as_passed_with_warnings_everywhere(site: Path) -> None:
    report = _run("20260301T060000Z-warned", 0, email_ok=False)
    assert (report.verdict, report.failed, report.warned) == ("passed with warnings", 0, 1)
    run_page = _Page((site / "runs" / "20260301T060000Z-warned.html").read_text(encoding="utf-8"))
    # The run, then its two suites: the customer suite warned, the order suite passed.
    assert run_page.verdicts == ["passed with warnings", "passed with warnings", "passed"]
    index = (site / "index.html").read_text(encoding="utf-8")
    warned_row = next(line for line in index.split("<tr>") if "20260301T060000Z-warned" in line)
    assert _Page(warned_row).verdicts == ["passed with warnings"]
    assert "failed" not in "".join(run_page.verdicts)


def test_the_index_lists_every_run_newest_first_with_its_id_verdict_and_counts(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.index("20260301T070000Z-failed") < index.index("20260301T060000Z-warned")
    assert _Page(index).verdicts[:2] == ["failed", "passed with warnings"]
    assert "2026-03-01 07:00:00 UTC" in index and "2026-03-01 06:00:00 UTC" in index
    failed_row = next(line for line in index.split("<tr>") if "20260301T070000Z-failed" in line)
    assert '<td class="num">2</td><td class="num">0</td><td class="num">1</td>' in failed_row


def test_a_run_page_shows_each_expectation_with_its_severity_result_and_examples(site: Path) -> None:
    page = (site / "runs" / "20260301T070000Z-failed.html").read_text(encoding="utf-8")
    assert "<h1>Run 20260301T070000Z-failed</h1>" in page
    row = next(line for line in page.split("<tr>") if "total_due" in line)
    assert "critical" in row and '<span class="result fail">fail</span>' in row
    assert "7 of 31,465" in row and "&#x27;-1&#x27;" in row
    warned = (site / "runs" / "20260301T060000Z-warned.html").read_text(encoding="utf-8")
    email_row = next(line for line in warned.split("<tr>") if "email" in line)
    assert "warning" in email_row and '<span class="result warn">warn</span>' in email_row
    assert "françois0@adventure-works.com" in email_row and "43 of 19,119" in email_row


def test_a_suite_page_lists_its_expectations_and_the_runs_that_checked_it(site: Path) -> None:
    page = (site / "suites" / "customer_quality_suite.html").read_text(encoding="utf-8")
    document = suite_documents()["customer_quality_suite"].document
    for expectation in document["expectations"]:
        assert expectation["type"] in page
    assert "gx/expectations/customer_quality_suite.json" in page
    assert "20260301T060000Z-warned" in page and "20260301T070000Z-failed" in page


def test_every_relative_link_of_every_page_resolves_to_a_file(site: Path) -> None:
    checked = 0
    for path, page in _pages(site).items():
        for _, url in page.urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{path.name} links outside: {url}"
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{path.relative_to(site)} links to {url}, which does not exist"
            assert target.is_relative_to(site.resolve())
            checked += 1
    assert checked > 10


def test_no_page_loads_anything_from_the_network_or_needs_a_script(site: Path) -> None:
    for path, page in _pages(site).items():
        text = path.read_text(encoding="utf-8")
        assert not [url for _, url in page.urls if url.startswith(("http:", "https:", "//"))], path
        assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
        assert "url(" not in text and "@import" not in text and "https://" not in text
        assert page.rows > 1, f"{path.name} has an empty table"


def test_a_suite_only_in_the_history_keeps_its_page_and_an_unreadable_record_is_named(tmp_path: Path) -> None:
    quality_dir = tmp_path / "quality"
    old = _run("20250101T000000Z-old", 0, email_ok=True)
    old.outcomes = [o for o in old.outcomes if o.suite == "order_quality_suite"]
    old.outcomes = [o.__class__(**{**o.__dict__, "suite": "orders_v1"}) for o in old.outcomes]
    old.definitions = {
        "orders_v1": {
            "name": "orders_v1",
            "meta": {"model": "fct_orders"},
            "expectations": [{"type": "expect_column_values_to_be_between"}],
        }
    }
    _keep(quality_dir, old)
    # What GX's own results looked like before these docs: no dataops record.
    (quality_dir / "20240101T000000Z.json").write_text('{"success": true, "validation_results": []}')
    # A leftover of GX's site must not survive the swap.
    (quality_dir / "data_docs" / "validations").mkdir(parents=True)
    index = build_site(quality_dir, suite_documents())

    suite_page = (index.parent / "suites" / "orders_v1.html").read_text(encoding="utf-8")
    assert "no longer in gx/; as it ran in 20250101T000000Z-old" in suite_page
    text = index.read_text(encoding="utf-8")
    assert "Records that could not be read" in text and "20240101T000000Z.json" in text
    assert "not a dataops quality record" in text
    assert not (index.parent / "validations").exists()
