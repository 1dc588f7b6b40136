"""`sqlfluff` for the dbt models, rendered for SQL Server with no server (pre-commit, `make lint`,
the CI lint job and the tests all run it; arguments as `sqlfluff`'s: `lint dbt/models`, `fix ...`).

Why a wrapper: SQLFluff's dbt templater fills dbt's relation cache before it compiles a model, and
that lists the target's schemas, i.e. connects. Linting needs no relation list (no model
introspects the warehouse), so the cache is left empty and nothing connects: the lint profile
(dbt/lint/profiles.yml) points at a host in the reserved `.invalid` domain, so a model that did
introspect would fail to template, never reach a warehouse. Rendering for SQL Server matters:
the T-SQL dialect cannot parse what the cross-database macros render for DuckDB or PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from dbt.adapters.base.impl import BaseAdapter


def _no_relations_cache(self: BaseAdapter, relation_configs: Iterable[Any], *args: Any, **kwargs: Any) -> None:
    """Render without listing the warehouse's relations: the models need none to compile."""


def main() -> int:
    BaseAdapter.set_relations_cache = _no_relations_cache  # type: ignore[method-assign]
    from sqlfluff.cli.commands import cli

    return cli.main(args=sys.argv[1:], prog_name="sqlfluff", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
