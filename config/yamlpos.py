"""YAML to plain Python values, keeping where every key and value stood in the file.

ruamel.yaml's node graph carries a line and column for each node. We compose the graph (with the
libyaml-based parser when ``ruamel.yaml.clib`` is installed: about five times faster than the pure
Python one on a 10,000-rule file), turn it into plain dicts, lists and scalars for validation, and
keep the graph to look positions up only when an error needs one: most files have no errors, so we
never pay for a position table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from config.issues import Issue, Path, format_path

__all__ = ["YamlDocument", "parse_yaml"]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class _CachedResolver(VersionedResolver):
    """ruamel's resolver re-derives the YAML version for every scalar (through caught
    AttributeErrors); one document has one version, so look it up once. Halves compose time."""

    @property
    def versioned_resolver(self) -> Any:
        try:
            return self.__dict__["_omnidesk_resolvers"]
        except KeyError:
            found = VersionedResolver.versioned_resolver.fget(self)  # type: ignore[attr-defined]
            self.__dict__["_omnidesk_resolvers"] = found
            return found


def _yaml() -> YAML:
    try:
        yaml = YAML(typ="safe", pure=False)
    except ImportError:  # pragma: no cover - only without ruamel.yaml.clib
        yaml = YAML(typ="safe", pure=True)
    yaml.Resolver = _CachedResolver
    return yaml


@dataclass
class YamlDocument:
    """The plain data of one YAML document and the node graph to find positions in."""

    file: str
    data: Any
    root: Node | None
    issues: list[Issue] = field(default_factory=list)
    text: str = ""

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the value at ``path``, or of its key when ``key`` is true.

        A path that leaves the document (a missing key) resolves to the deepest node it reaches,
        which is where the admin has to add the missing piece.
        """
        node = self._locate(path, key=key)
        return (1, 1) if node is None else _mark(node)

    def text_position(self, path: Path, offset: int) -> tuple[int, int]:
        """Where character ``offset`` of the text scalar at ``path`` stands in the file.

        Exact for plain, quoted and literal (``|``) scalars without escapes; otherwise the
        scalar's start, which is still the right line to look at.
        """
        node = self._locate(path)
        if not isinstance(node, ScalarNode):
            return self.position(path)
        line, column = _mark(node)
        value: str = node.value
        before = value[:offset]
        if node.style == "|":
            first = node.start_mark.line + 1
            row = first + before.count("\n")
            lines = self.text.splitlines()
            # The block's indentation is that of its first non-blank line.
            content = [ln for ln in lines[first : row + 1] if ln.strip()]
            if row < len(lines) and content:
                indent = len(content[0]) - len(content[0].lstrip(" "))
                return (row + 1, indent + offset - (before.rfind("\n") + 1) + 1)
        elif "\n" not in before and node.style in (None, "'", '"'):
            return (line, column + offset + (1 if node.style else 0))
        return (line, column)

    def _locate(self, path: Path, *, key: bool = False) -> Node | None:
        node = self.root
        if node is None:
            return None
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(node, MappingNode) and isinstance(part, str):
                found = _find_pair(node, part)
                if found is None:
                    break
                key_node, value_node = found
                if last and key:
                    return key_node
                node = value_node
            elif isinstance(node, SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
            else:
                break
        return node

    def issue(self, path: Path, message: str, *, key: bool = False) -> Issue:
        line, column = self.position(path, key=key)
        return Issue(self.file, line, column, format_path(path), message)


def _mark(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _split_pairs(node: MappingNode) -> tuple[list[tuple[Node, Node]], list[tuple[Node, Node]]]:
    """The mapping's own pairs, and those brought in by ``<<`` merge keys."""
    own: list[tuple[Node, Node]] = []
    merged: list[tuple[Node, Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if isinstance(source, MappingNode):
                    merged.extend(_pairs(source))
        else:
            own.append((key_node, value_node))
    return own, merged


def _pairs(node: MappingNode) -> list[tuple[Node, Node]]:
    """Own pairs first, so that an own key wins over a merged one of the same name."""
    own, merged = _split_pairs(node)
    return own + merged


def _find_pair(node: MappingNode, name: str) -> tuple[Node, Node] | None:
    for key_node, value_node in _pairs(node):
        if isinstance(key_node, ScalarNode) and key_node.value == name:
            return key_node, value_node
    return None


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document. Syntax errors and unusable keys land in ``issues``."""
    yaml = _yaml()
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}, {exc.problem}"
        return YamlDocument(
            file, None, None, [Issue(file, line, column, "", f"YAML syntax: {problem}")], text
        )
    except YAMLError as exc:  # pragma: no cover - errors without a position are rare
        return YamlDocument(file, None, None, [Issue(file, 1, 1, "", f"YAML syntax: {exc}")], text)
    doc = YamlDocument(file, None, root, text=text)
    if root is not None:
        doc.data = _Converter(doc, yaml).value(root, ())
    return doc


class _Converter:
    """Turns composed nodes into dicts, lists and scalars, recording bad keys as issues."""

    def __init__(self, doc: YamlDocument, yaml: YAML) -> None:
        self.doc = doc
        self.constructor = yaml.constructor

    def value(self, node: Node, path: Path) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        raise AssertionError(f"unexpected YAML node {node!r}")  # pragma: no cover

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        own, merged = _split_pairs(node)
        for index, (key_node, value_node) in enumerate(own + merged):
            if not isinstance(key_node, ScalarNode) or key_node.tag not in (_STR, _INT, _BOOL):
                line, column = _mark(key_node)
                self.doc.issues.append(
                    Issue(
                        self.doc.file, line, column, format_path(path), "keys must be plain names"
                    )
                )
                continue
            name = str(key_node.value)
            if name in seen:
                if index < len(own):  # a merged key that an own key overrides is no mistake
                    line, column = _mark(key_node)
                    first = seen[name].start_mark.line + 1
                    self.doc.issues.append(
                        Issue(
                            self.doc.file,
                            line,
                            column,
                            format_path((*path, name)),
                            f"duplicate key {name!r} (first given on line {first})",
                        )
                    )
                continue
            seen[name] = key_node
            out[name] = self.value(value_node, (*path, name))
        return out

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return node.value.lower() == "true"
        if tag in (_INT, _FLOAT, _TIMESTAMP):
            try:
                value = self.constructor.construct_object(node)
            except (ValueError, OverflowError):
                # Looks like a date or number but is none, e.g. 2026-13-01: keep the text and let
                # validation say what was expected there.
                return node.value
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                return value.replace(tzinfo=dt.UTC)
            return value
        line, column = _mark(node)
        self.doc.issues.append(
            Issue(self.doc.file, line, column, format_path(path), f"unsupported YAML tag {tag}")
        )
        return None
