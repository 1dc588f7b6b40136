"""monitoring/statsd/mapping.yml, and the model of statsd-exporter's mapper that checks it
(tests/statsd_mapping.py): the mapper's rules on small mappings first, so that a green mapping
test means the model is right; then every metric Airflow 3.3 itself declares (its metrics
registry, metrics_template.yaml in the installed Airflow), sent as Airflow sends it, through the
real mapping file. The real packets are in tests/integration/test_airflow_statsd.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from statsd_mapping import (  # tests/statsd_mapping.py
    MAPPING_FILE,
    Event,
    Mapper,
    MappingError,
    PacketError,
    declared_outputs,
    map_datagrams,
    parse_datagram,
)


def mapper(*mappings: dict[str, Any], **defaults: Any) -> Mapper:
    return Mapper({"defaults": defaults, "mappings": list(mappings)})


def mapped(m: Mapper, name: str, kind: str = "counter") -> tuple[str, dict[str, str]] | None:
    series = m.map(Event(name, 1.0, kind))
    return None if series is None else (series.name, dict(series.labels))


# --- the mapper's rules -------------------------------------------------------------------------


def test_a_glob_star_is_exactly_one_component() -> None:
    m = mapper({"match": "a.*.c", "name": "abc", "labels": {"middle": "$1"}})
    assert mapped(m, "a.b.c") == ("abc", {"middle": "b"})
    assert mapped(m, "a.b.x.c") == ("a_b_x_c", {})  # two components: no match, the escaped name
    assert mapped(m, "a.c") == ("a_c", {})
    assert mapped(m, "a.b.cd") == ("a_b_cd", {})


def test_a_star_inside_a_component_or_a_bad_label_refuses_the_file() -> None:
    with pytest.raises(MappingError, match="whole dot-separated component"):
        mapper({"match": "a.b*", "name": "x"})
    with pytest.raises(MappingError, match="label key"):
        mapper({"match": "a.*", "name": "x", "labels": {"dag-id": "$1"}})
    with pytest.raises(MappingError, match="no metric name"):
        mapper({"match": "a.*"})
    with pytest.raises(MappingError, match="no Prometheus metric name"):
        mapper({"match": "a.*", "name": "${1}_x"}).map(Event("a.9", 1, "counter"))


def test_every_glob_is_tried_before_any_regex_and_the_first_glob_wins() -> None:
    m = mapper(
        {"match": "^a\\.(\\w+)$", "match_type": "regex", "name": "by_regex"},
        {"match": "a.*", "name": "first_glob"},
        {"match": "a.b", "name": "second_glob"},
    )
    assert mapped(m, "a.b") == ("first_glob", {})
    assert mapped(m, "a.b.c") == ("a_b_c", {})
    m = mapper({"match": "^a\\.b\\.(\\w+)$", "match_type": "regex", "name": "by_regex_${1}"})
    assert mapped(m, "a.b.c") == ("by_regex_c", {})


def test_regex_references_take_the_longest_word_as_go_does() -> None:
    # `$1_total` is a reference to a group named `1_total` (empty), not group 1 and `_total`.
    m = mapper(
        {"match": "^x\\.(\\w+)$", "match_type": "regex", "name": "n", "labels": {"aa": "$1_total", "bb": "${1}_total"}}
    )
    assert mapped(m, "x.y") == ("n", {"aa": "", "bb": "y_total"})


def test_match_metric_type_drop_and_the_catch_all() -> None:
    m = mapper(
        {"match": "a.*", "name": "a_counter", "match_metric_type": "counter"},
        {"match": ".", "match_type": "regex", "action": "drop", "name": "dropped"},
    )
    assert mapped(m, "a.b", "counter") == ("a_counter", {})
    assert mapped(m, "a.b", "gauge") is None
    assert mapped(m, "anything.else", "observer") is None


def test_observers_become_histograms_or_summaries_with_their_series() -> None:
    m = mapper({"match": "t.*", "name": "t", "labels": {"kk": "$1"}}, observer_type="histogram")
    produced = map_datagrams(m, ["t.a:12.5|ms\nt.b:3|ms", "g.x:4|g"])
    assert set(produced) == {"t_bucket", "t_sum", "t_count", "g_x"}
    summary = mapper({"match": "t.*", "name": "t", "observer_type": "summary"})
    assert summary.map(Event("t.a", 1, "observer")).exposed_names == ("t", "t_sum", "t_count")


def test_plain_statsd_lines_parse_and_anything_else_is_refused() -> None:
    assert parse_datagram("a.b:1|c\na.c:2.5|ms|@0.5\n") == [Event("a.b", 1, "counter"), Event("a.c", 2.5, "observer")]
    for line in ("a.b:1|c|#tag:x", "a.b,tag=x:1|c", "a.b 1", "a.b:1|zz"):
        with pytest.raises(PacketError):
            parse_datagram(line)


# --- the project's mapping ----------------------------------------------------------------------


def _airflow_registry() -> list[dict[str, Any]]:
    spec = importlib.util.find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("Airflow is not installed (the `airflow` extra): its metrics registry is not here")
    registry = Path(next(iter(spec.submodule_search_locations))) / "_shared/observability/metrics/metrics_template.yaml"
    assert registry.is_file(), f"Airflow moved its metrics registry: no {registry}"
    return yaml.safe_load(registry.read_text(encoding="utf-8"))["metrics"]


# Values as Airflow fills its legacy names: a dot in a value becomes `__`.
SAMPLE = {
    "dag_id": "a_dag",
    "task_id": "a_group__a_task",
    "state": "success",
    "pool_name": "default_pool",
    "executor_class_name": "LocalExecutor",
    "queue": "default",
    "operator_name": "BashOperator",
    "task_type": "BashOperator",
    "hostname": "host",
    "bundle_name": "dags-folder",
    "file_name": "pipeline",
}
STATSD_TYPE = {"counter": "c", "gauge": "g", "timer": "ms"}


def _as_sent(metric: dict[str, Any]) -> list[str]:
    """The lines Airflow sends for a registry metric without InfluxDB tags: its legacy name with
    the values in it, and its new name bare (its tags dropped)."""
    values = {name: SAMPLE.get(name, "x") for name in metric.get("name_variables", [])}
    kind = STATSD_TYPE[metric["type"]]
    lines = [f"airflow.{metric['name'].format(**values)}:1|{kind}"]
    if metric.get("legacy_name", "-") != "-":
        lines.append(f"airflow.{metric['legacy_name'].format(**values)}:1|{kind}")
    return lines


def test_the_header_lists_exactly_what_airflow_s_own_metrics_map_to() -> None:
    m, declared = Mapper.from_file(MAPPING_FILE), declared_outputs()
    produced: dict[str, set[tuple[str, frozenset[str]]]] = {}
    for metric in _airflow_registry():
        for line in _as_sent(metric):
            for event in parse_datagram(line):
                series = m.map(event)
                if series is not None:
                    produced.setdefault(series.name, set()).add((series.kind, frozenset(k for k, _ in series.labels)))
    assert len(produced) > 30
    # Every metric a rule maps is in the header, with its labels and kind, and nothing else is.
    assert set(produced) == set(declared), set(produced) ^ set(declared)
    for name, kinds in produced.items():
        assert kinds == {(declared[name][1], declared[name][0])}, (name, kinds, declared[name])


def test_a_bare_new_name_is_dropped_where_it_would_clash_with_its_labelled_legacy_twin() -> None:
    m = Mapper.from_file(MAPPING_FILE)
    for bare in ("airflow.dagrun.duration.success:1|ms", "airflow.ti.finish:1|c", "airflow.pool.open_slots:3|g"):
        assert [m.map(event) for event in parse_datagram(bare)] == [None], bare
    [success] = parse_datagram("airflow.dagrun.duration.success.adventureworks_pipeline:61000|ms")
    series = m.map(success)
    assert series is not None
    assert (series.name, series.kind, series.labels) == (
        "airflow_dagrun_duration_success",
        "histogram",
        (("dag_id", "adventureworks_pipeline"),),
    )
    [finish] = parse_datagram("airflow.ti.finish.adventureworks_pipeline.dbt__fct_orders__test.failed:1|c")
    assert m.map(finish).labels == (
        ("dag_id", "adventureworks_pipeline"),
        ("state", "failed"),
        ("task_id", "dbt__fct_orders__test"),
    )
