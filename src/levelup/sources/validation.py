"""Checks of the ``sources:`` section that need more than its shape, each error with its path."""

from __future__ import annotations

from collections.abc import Iterator

from levelup.errors import FieldError
from levelup.programs.document import ProgramDocument, Source
from levelup.rules.expressions import Expression, ExpressionError

#: The variables a mapping's expressions see (docs/integrations.md).
VARIABLES = frozenset({"item", "object", "headers"})


def _expressions(source: Source) -> Iterator[tuple[str, str]]:
    for m, mapping in enumerate(source.events):
        for name in ("when", "id", "participant", "occurred_at", "reverses"):
            text = getattr(mapping, name)
            if text is not None:
                yield f"events[{m}].{name}", text
        for key, text in mapping.data.items():
            yield f"events[{m}].data.{key}", text


def errors(doc: ProgramDocument) -> Iterator[FieldError]:
    seen: set[str] = set()
    for s, source in enumerate(doc.sources):
        path = f"sources[{s}]"
        if source.key in seen:
            yield FieldError(f"{path}.key", f'duplicate source "{source.key}"')
        seen.add(source.key)
        if source.secret is None:
            yield FieldError(f"{path}.secret", f"a {source.kind} source needs a secret to check its deliveries")
        if source.organization is not None and source.kind != "salesforce":
            yield FieldError(f"{path}.organization", "the org id of Outbound Messages: salesforce sources only")
        if source.fetch is not None and source.kind != "hubspot":
            yield FieldError(f"{path}.fetch", "fetch reads HubSpot's CRM objects API: hubspot sources only")
        for where, text in _expressions(source):
            try:
                expression = Expression.compile(text)
            except ExpressionError as exc:
                yield FieldError(f"{path}.{where}", str(exc))
                continue
            unknown = expression.free_variables - VARIABLES  # those a comprehension binds are known
            if "object" in expression.variables and source.fetch is None:
                yield FieldError(f"{path}.{where}", "uses object, but the source has no fetch")
            if unknown:
                yield FieldError(f"{path}.{where}", f"unknown variable(s): {', '.join(sorted(unknown))}")
