"""Read runbook YAML into the model, reporting errors with file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rb_common.errors import RunbookLoadError
from rb_common.model import Runbook

Location = tuple[Any, ...]
_BOOL_1_2 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
MAX_NODES = 100_000


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and remembers where each node starts.

    Booleans are YAML 1.2's `true`/`false` only: YAML 1.1 would read `on:` (the key of a notify
    rule), `yes`, `no` and `off` as booleans."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own per-class table
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[Location, int] = {}

    def construct_document(self, node: yaml.Node) -> Any:
        self._nodes = 0
        self._index(node, ())
        return super().construct_document(node)

    def _index(self, node: yaml.Node, loc: Location) -> None:
        # Counted with aliases expanded: an alias bomb is refused before anything expands it.
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.MarkedYAMLError(
                problem=f"document too large (over {MAX_NODES} nodes, aliases expanded)",
                problem_mark=node.start_mark,
            )
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    raise yaml.MarkedYAMLError(
                        problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                    )
                seen.add(key)
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
                self._index(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*loc, i))


def parse_yaml(text: str, path: str) -> tuple[Any, dict[Location, int]]:
    """The document and a map from location path to line; YAML errors carry the line."""
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RunbookLoadError(path, f"invalid YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise RunbookLoadError(path, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise RunbookLoadError(path, "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, loader.lines


def _describe(loc: Location, data: Any) -> str:
    """`steps[2] (enrich).retry.max_attempts` style location, naming steps by id."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            label = f"[{part}]"
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                step_id = node[part].get("id")
                if step_id:
                    label += f" ({step_id})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return "".join(parts) or "(document)"


def runbook_from_data(data: Any, path: str, lines: dict[Location, int] | None = None) -> Runbook:
    if not isinstance(data, dict):
        raise RunbookLoadError(path, "a runbook is a YAML mapping at the top level", 1)
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        line = None
        for cut in range(len(loc), -1, -1):
            line = (lines or {}).get(loc[:cut])
            if line:
                break
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise RunbookLoadError(path, f"{_describe(loc, data)}: {msg}{more}", line) from None


def load_runbook_text(text: str, path: str = "<string>") -> tuple[Runbook, dict[Location, int]]:
    data, lines = parse_yaml(text, path)
    return runbook_from_data(data, path, lines), lines


def load_runbook(path: str | Path) -> Runbook:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookLoadError(str(p), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookLoadError(str(p), f"cannot read: {exc}") from None
    return load_runbook_text(text, str(p))[0]


def referenced_files(runbook: Runbook, base_dir: Path) -> dict[str, str]:
    """Texts of the files the runbook's steps name (schemas, GraphQL documents), by name: its
    own `files`, then those next to it (rb_common.snapshot.snapshot_files)."""
    from rb_common.snapshot import snapshot_files

    return snapshot_files(runbook, base_dir)


_LineLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_1_2, list("tTfF"))
