"""A row-count fault is caught at any scale, not only where the guide's constant floor happens to
sit: at scale 1, a load cut to 2% of the orders (629 of 31,465) is above the guide's 500, and only
the bounds learnt from the clean run's history (a tenth of its rows at least) fail it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.commands.detection import CLEAN, run_matrix
from dataops.core.config import load_settings

pytestmark = pytest.mark.integration

ROW_COUNT = "expect_table_row_count_to_be_between on fct_orders"


def test_a_truncated_load_at_scale_1_fails_the_row_count_learnt_from_the_history(
    warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("DATAOPS_CUSTOMER_ROWS", "DATAOPS_ORDER_ROWS"):
        monkeypatch.delenv(variable, raising=False)
    clean, truncated = run_matrix(load_settings("ci"), scale=1, faults=["truncated_load"])
    assert (clean.fault, clean.outcome, clean.publish) == (CLEAN, "pass", "published"), clean
    assert truncated.as_intended, truncated
    assert ROW_COUNT in truncated.fired and truncated.outcome == "fail"
    assert f"{ROW_COUNT}: observed 629" in truncated.detail, truncated.detail
    # The message names the bounds, where they came from and the variable that sets them.
    assert "rows, from the history" in truncated.detail and "DATAOPS_ORDER_ROWS=MIN..MAX" in truncated.detail
