"""What prometheus/statsd_exporter makes of a StatsD line under a mapping file, for the tests:
the exporter's binary cannot be installed here, so this follows its mapper
(pkg/mapper/mapper.go, pkg/mapper/fsm) closely enough to be checked against real Airflow packets:

- A line is `name:value|type[|@rate]`; a datagram may hold several lines. Types: c (counter),
  g (gauge), ms/h/d (observed: a timer, histogram or distribution; the mapper calls them
  `observer`). Tags are refused here: Airflow sends none without statsd_influxdb_enabled.
- `glob` mappings (the default match_type) are tried first, all of them, then the `regex`
  mappings in file order. A glob's `*` stands for exactly one whole dot-separated component
  (the mapper refuses a glob where `*` is part of a component); the glob defined first wins
  (glob_disable_ordering false, the default); `$n`/`${n}` in the name and labels are the captures.
- `match_metric_type` restricts a mapping to counter, gauge or observer.
- `action: drop` drops the metric; a metric no mapping matches keeps its own name, every
  character but [a-zA-Z0-9_] turned into `_`, and no labels.
- An observer becomes a histogram (`_bucket`, `_sum`, `_count`) or a summary (`_sum`, `_count`
  and quantiles), by observer_type (or the deprecated timer_type), with the file's defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The mapper's own validation (pkg/mapper/mapper.go).
_STATSD_COMPONENT = r"[a-zA-Z_](-?[a-zA-Z0-9_])*"
GLOB = re.compile(rf"^(\*\.|{_STATSD_COMPONENT}\.)+(\*|{_STATSD_COMPONENT})$")
_TEMPLATE = r"(\$\{?\d+\}?)"
METRIC_NAME = re.compile(rf"^([a-zA-Z_]|{_TEMPLATE})([a-zA-Z0-9_]|{_TEMPLATE})*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]+$")
PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# A glob's `$n` is digits only (the FSM's formatter); a regex's takes the longest run of word
# characters, as Go's Regexp.Expand does: `$1_total` names a group `1_total`, hence `${1}_total`.
_GLOB_REFERENCE = re.compile(r"\$\{(\d+)\}|\$(\d+)")
_REGEX_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")

TYPES = {"c": "counter", "g": "gauge", "ms": "observer", "h": "observer", "d": "observer"}
METRIC_TYPES = {"counter", "gauge", "observer", "timer"}  # `timer`: the mapper's older word
OBSERVER_TYPES = {"histogram", "summary"}
_LINE = re.compile(r"^(?P<name>[^:|@#,]+):(?P<value>[^:|]+)\|(?P<type>[a-z]+)(?:\|@(?P<rate>[0-9.eE+-]+))?$")


class MappingError(ValueError):
    """The mapping file is one statsd-exporter would refuse to start with."""


class PacketError(ValueError):
    """A line that is not plain StatsD."""


@dataclass(frozen=True)
class Event:
    """One StatsD line."""

    name: str
    value: float
    kind: str  # counter | gauge | observer


@dataclass(frozen=True)
class Series:
    """The Prometheus metric an event becomes: its name, type and labels."""

    name: str
    kind: str  # counter | gauge | histogram | summary
    labels: tuple[tuple[str, str], ...]
    mapped: bool  # False: no mapping matched; the name is the escaped StatsD name

    @property
    def exposed_names(self) -> tuple[str, ...]:
        """The names Prometheus scrapes for it."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        if self.kind == "summary":
            return (self.name, f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def parse_datagram(datagram: str) -> list[Event]:
    """Every line of a datagram; a line that is not plain StatsD raises PacketError."""
    events = []
    for line in datagram.splitlines():
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None or match["type"] not in TYPES:
            raise PacketError(f"not a plain StatsD line: {line!r}")
        events.append(Event(match["name"], float(match["value"]), TYPES[match["type"]]))
    return events


@dataclass(frozen=True)
class _Rule:
    match: str
    regex: re.Pattern[str] | None  # None: a glob
    name: str
    labels: dict[str, str]
    metric_type: str | None
    action: str
    observer_type: str


def _expand(template: str, captures: tuple[str, ...], glob: bool) -> str:
    def group(reference: re.Match[str]) -> str:
        word = reference[1] or reference[2]
        if not word.isdigit():
            return ""  # a named group: this mapper's regexes have none
        index = int(word)
        # A reference past the captures is empty, in the FSM's formatter as in Go's Expand.
        return captures[index - 1] if 0 < index <= len(captures) else ""

    return (_GLOB_REFERENCE if glob else _REGEX_REFERENCE).sub(group, template)


class Mapper:
    """A statsd-exporter mapping file, checked as the exporter checks it when it starts."""

    def __init__(self, document: dict[str, Any]) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("mappings"), list):
            raise MappingError("the file must be a mapping with a `mappings` list")
        defaults = document.get("defaults") or {}
        default_match_type = defaults.get("match_type", "glob")
        default_observer = defaults.get("observer_type", defaults.get("timer_type", "summary"))
        self.rules = [self._rule(entry, default_match_type, default_observer) for entry in document["mappings"]]

    @classmethod
    def from_file(cls, path: Path) -> Mapper:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    @staticmethod
    def _rule(entry: dict[str, Any], default_match_type: str, default_observer: str) -> _Rule:
        match, name = str(entry.get("match", "")), str(entry.get("name", ""))
        if not name:
            raise MappingError(f"mapping {match!r} sets no metric name")
        if not METRIC_NAME.match(name):
            raise MappingError(f"metric name {name!r} of {match!r} is not a valid name")
        labels = {str(key): str(value) for key, value in (entry.get("labels") or {}).items()}
        for label in labels:
            if not LABEL_NAME.match(label):
                raise MappingError(f"invalid label key {label!r} in {match!r}")
        match_type = entry.get("match_type", default_match_type)
        if match_type == "glob":
            if not GLOB.match(match):
                raise MappingError(f"invalid glob {match!r}: `*` must be a whole dot-separated component")
            regex = None
        elif match_type == "regex":
            try:
                regex = re.compile(match)
            except re.error as error:
                raise MappingError(f"invalid regex {match!r}: {error}") from error
        else:
            raise MappingError(f"unknown match_type {match_type!r} in {match!r}")
        metric_type = entry.get("match_metric_type")
        if metric_type is not None and metric_type not in METRIC_TYPES:
            raise MappingError(f"unknown match_metric_type {metric_type!r} in {match!r}")
        action = entry.get("action", "map")
        if action not in ("map", "drop"):
            raise MappingError(f"unknown action {action!r} in {match!r}")
        observer_type = entry.get("observer_type", entry.get("timer_type", default_observer))
        if observer_type not in OBSERVER_TYPES:
            raise MappingError(f"unknown observer_type {observer_type!r} in {match!r}")
        return _Rule(
            match, regex, name, labels, "observer" if metric_type == "timer" else metric_type, action, observer_type
        )

    def _captures(self, rule: _Rule, event: Event) -> tuple[str, ...] | None:
        if rule.metric_type is not None and rule.metric_type != event.kind:
            return None
        if rule.regex is not None:
            found = rule.regex.search(event.name)
            return None if found is None else tuple(group or "" for group in found.groups())
        pattern, components = rule.match.split("."), event.name.split(".")
        if len(pattern) != len(components):
            return None
        captures = []
        for expected, component in zip(pattern, components, strict=True):
            if expected == "*":
                captures.append(component)
            elif expected != component:
                return None
        return tuple(captures)

    def rule_for(self, event: Event) -> tuple[_Rule, tuple[str, ...]] | None:
        """The rule that wins for the event, with its captures: the first glob, else the first regex."""
        for globs in (True, False):
            for rule in self.rules:
                if (rule.regex is None) != globs:
                    continue
                captures = self._captures(rule, event)
                if captures is not None:
                    return rule, captures
        return None

    def map(self, event: Event) -> Series | None:
        """The series the event becomes, or None when the mapping drops it."""
        found = self.rule_for(event)
        if found is None:
            escaped = re.sub(r"[^a-zA-Z0-9_]", "_", event.name)
            name = f"_{escaped}" if escaped[:1].isdigit() else escaped
            kind = "summary" if event.kind == "observer" else event.kind
            return Series(name, kind, (), mapped=False)
        rule, captures = found
        if rule.action == "drop":
            return None
        glob = rule.regex is None
        name = _expand(rule.name, captures, glob)
        if not PROMETHEUS_NAME.match(name):
            raise MappingError(f"{event.name!r} maps to {name!r}, which is no Prometheus metric name")
        labels = tuple(sorted((label, _expand(value, captures, glob)) for label, value in rule.labels.items()))
        kind = rule.observer_type if event.kind == "observer" else event.kind
        return Series(name, kind, labels, mapped=True)


def map_datagrams(mapper: Mapper, datagrams: tuple[str, ...] | list[str]) -> dict[str, list[tuple[Event, Series]]]:
    """Every exposed Prometheus name the datagrams produce, with the events and series behind it."""
    produced: dict[str, list[tuple[Event, Series]]] = {}
    for datagram in datagrams:
        for event in parse_datagram(datagram):
            series = mapper.map(event)
            if series is None:
                continue
            for name in series.exposed_names:
                produced.setdefault(name, []).append((event, series))
    return produced


ROOT = Path(__file__).resolve().parents[1]
MAPPING_FILE = ROOT / "monitoring" / "statsd" / "mapping.yml"
DASHBOARD_FILE = ROOT / "monitoring" / "grafana" / "dashboards" / "dataops.json"
ALERT_RULES_FILE = ROOT / "monitoring" / "alert-rules.yml"
_AIRFLOW_NAME = re.compile(r"\bairflow_[a-zA-Z0-9_:]*")


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Every PromQL query of the dashboard, by panel title (rows' nested panels included)."""
    queries: dict[str, list[str]] = {}
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        if panel.get("type") == "row":
            continue
        queries[panel.get("title", "")] = [target.get("expr", "") for target in panel.get("targets", [])]
    return queries


def airflow_metrics_used(dashboard: dict[str, Any], alert_rules: dict[str, Any] | None) -> dict[str, set[str]]:
    """Each Airflow metric (name as Prometheus stores it) the dashboard's panels and the alert
    rules query, with where it is used."""
    used: dict[str, set[str]] = {}
    for title, expressions in dashboard_queries(dashboard).items():
        for expression in expressions:
            for name in _AIRFLOW_NAME.findall(expression):
                used.setdefault(name, set()).add(f"panel {title!r}")
    for group in (alert_rules or {}).get("groups", []):
        for rule in group.get("rules", []):
            for name in _AIRFLOW_NAME.findall(str(rule.get("expr", ""))):
                used.setdefault(name, set()).add(f"alert {rule.get('alert') or rule.get('record')}")
    return used


_OUTPUT_ENTRY = re.compile(r"(airflow_[a-z_]+)(?:\{([a-z_,]+)\})?")


def declared_outputs(path: Path = MAPPING_FILE) -> dict[str, tuple[frozenset[str], str]]:
    """The metrics the mapping file's header says it produces: name -> (label names, kind), the
    kind of a line's last entry applying to every entry on it (`gauges` lists)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("# OUTPUT:"))
    start = next(index for index in range(start, len(lines)) if lines[index].startswith("#   airflow_")) - 1
    outputs: dict[str, tuple[frozenset[str], str]] = {}
    pending: list[tuple[str, frozenset[str]]] = []
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        entries = [
            (name, frozenset(filter(None, (labels or "").split(",")))) for name, labels in _OUTPUT_ENTRY.findall(line)
        ]
        pending.extend(entries)
        kind = next((word for word in ("histogram", "counter", "gauge") if re.search(rf"\b{word}s?\b", line)), None)
        if kind is not None:
            outputs.update({name: (labels, kind) for name, labels in pending})
            pending = []
    if pending:
        raise MappingError(f"no kind given for {', '.join(name for name, _ in pending)} in {path}")
    return outputs


def exposed(outputs: dict[str, tuple[frozenset[str], str]]) -> set[str]:
    """The names Prometheus stores for the declared outputs (a histogram's three series)."""
    return {
        name
        for output, (labels, kind) in outputs.items()
        for name in Series(output, kind, tuple((label, "") for label in labels), True).exposed_names
    }
