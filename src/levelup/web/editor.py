"""The studio's document editor: the errors of a draft at their line, and its diff against the version in force."""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from levelup.errors import FieldError, Invalid
from levelup.programs.validation import load_document

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_LINE = re.compile(r"at line (\d+)")


# libyaml's emitter where PyYAML was built with it (its wheels are): the same text, ~5x faster (acme-sales:
# 11.3 -> 2.1 ms, a sizeable part of the program's page)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def as_yaml(document: dict[str, Any]) -> str:
    """A stored document as YAML for people, keys in the document's own order."""
    return yaml.dump(document, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=120)


def _line_of(root: yaml.Node | None, path: str) -> int | None:
    """The 1-based line of ``path`` (``rules[2].award.xp``) in the composed YAML, or of its nearest parent."""
    node, line = root, None
    for name, index in _STEP.findall(path):
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode) and name:
            found = next(((k, v) for k, v in node.value if getattr(k, "value", None) == name), None)
            if found is None:
                return line
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and index:
            node = node.value[int(index)] if int(index) < len(node.value) else None
            line = node.start_mark.line + 1 if node is not None else line
        else:
            return line
    return line


def check(text: str, program: str) -> list[dict[str, Any]]:
    """Every error of the draft with the API's message and its line (None when it has none); [] when valid."""
    try:
        load_document(text, program=program)
    except Invalid as invalid:
        errors = invalid.errors or [FieldError("(document)", invalid.detail)]
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            root = None
        out = []
        for e in errors:
            at = _LINE.search(e.message) or _LINE.search(invalid.detail)
            line = int(at.group(1)) if at and e.path == "(document)" else _line_of(root, e.path)
            out.append({"path": e.path, "message": e.message, "line": line})
        return out
    return []


def diff(current: str, draft: str) -> str:
    """A unified diff from the version in force to the draft ('' when they are the same)."""
    lines = difflib.unified_diff(
        current.splitlines(keepends=True), draft.splitlines(keepends=True), "in force", "draft", n=2
    )
    return "".join(lines)
