"""Parse and validate a program document, reporting every error with its path.

Shape errors come from pydantic; cross references and CEL syntax are checked
here, so an admin fixing a document sees the whole list at once, e.g.
``rules[2].award.xp: unknown currency "xpp"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import ValidationError

from levelup.errors import FieldError, Invalid, data_errors, nesting, path_of
from levelup.metrics.periods import ROLLING
from levelup.programs import personal
from levelup.programs.document import ProgramDocument
from levelup.rules.expressions import EVENT_VARIABLES, Expression, ExpressionError, check_cost
from levelup.sources import validation as sources

MAX_DOCUMENT_BYTES = 1_000_000
MAX_DOCUMENT_DEPTH = 32
MAX_ALIASES = 100  # YAML aliases: each one can multiply what validation walks (and reports)
_UNION_TAGS = {"int", "float", "str", "bool", "constrained-str", "constrained-float", "function-after", "literal"}


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML where a key given twice is an error (a second ``if:`` must not replace the first
    silently) and aliases are few."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # not hashable: the base constructor refuses it
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_binary(self, node: Any) -> Any:
        """Refused: a document is JSON data, and bytes would pass for text past the CEL check (pydantic
        decodes them), to fail only when the engine compiles them."""
        raise yaml.constructor.ConstructorError(None, None, "binary (!!binary) is not JSON", node.start_mark)


_StrictLoader.add_constructor("tag:yaml.org,2002:binary", _StrictLoader.construct_yaml_binary)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


def _finite(constant: str) -> float:
    raise ValueError(f"{constant} is not a number JSON allows")


def parse_text(text: str | bytes, *, yaml_ok: bool = True) -> Any:
    """JSON or YAML text to plain data; Invalid with the line when it does not parse, when a key is
    given twice, or when it nests deeper than :data:`MAX_DOCUMENT_DEPTH`."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise Invalid(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_finite)
    except RecursionError:
        raise Invalid(f"document nested deeper than {MAX_DOCUMENT_DEPTH} levels") from None
    except ValueError as json_error:
        if not yaml_ok:
            raise Invalid(f"not valid JSON: {json_error}") from None
        data = _parse_yaml(text)
    if nesting(data, MAX_DOCUMENT_DEPTH) > MAX_DOCUMENT_DEPTH:
        raise Invalid(f"document nested deeper than {MAX_DOCUMENT_DEPTH} levels")
    return data


def _parse_yaml(text: str | bytes) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except RecursionError:
        raise Invalid(f"document nested deeper than {MAX_DOCUMENT_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise Invalid(f"not valid YAML or JSON{where}: {getattr(exc, 'problem', exc)}") from None


def _shape_errors(error: ValidationError) -> list[FieldError]:
    errors: dict[str, list[str]] = {}
    for item in error.errors():
        if item["msg"] == "Keys should be strings":
            continue  # said better, with the key's own path, by data_errors
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.split("[")[0] in _UNION_TAGS)]
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        errors.setdefault(path_of(loc) or "(document)", []).append(message)
    return [FieldError(path, "; ".join(dict.fromkeys(msgs))) for path, msgs in errors.items()]


def expressions_of(data: Any) -> Iterator[tuple[str, str]]:
    """Every CEL expression in a document (parsed or raw), with its path.

    Works on raw data so CEL errors are reported even when the shape is broken.
    """
    raw = data.model_dump(by_alias=True) if isinstance(data, ProgramDocument) else data
    for section, fields in (("metrics", ("if", "value")), ("rules", ("if",)), ("challenges", ("eligible",))):
        items = raw.get(section) if isinstance(raw, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            for name in fields:
                if isinstance(item.get(name), str):
                    yield f"{section}[{i}].{name}", item[name]
            paid = {"rules": "award", "challenges": "reward"}.get(section)  # a goal's reward: on its last event
            award = item.get(paid) if paid else None
            for currency, amount in award.items() if isinstance(award, dict) else ():
                if isinstance(amount, str):
                    yield f"{section}[{i}].{paid}.{currency}", amount


def _raw_errors(data: dict[str, Any]) -> Iterator[FieldError]:
    """Checks that need no valid shape: CEL syntax and the currencies rules award."""
    currencies = data.get("currencies")
    listed = currencies if isinstance(currencies, list) else []
    known = {c["key"] for c in listed if isinstance(c, dict) and isinstance(c.get("key"), str)}  # a list: unhashable
    rules = data.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        award = rule.get("award") if isinstance(rule, dict) else None
        for currency in award if isinstance(award, dict) else ():
            if currency not in known:
                yield FieldError(f"rules[{i}].award.{currency}", f'unknown currency "{currency}"')
    for path, source in expressions_of(data):
        try:
            expression = Expression.compile(source)
        except ExpressionError as exc:
            where = f" at column {exc.column}" if exc.column else ""
            yield FieldError(path, f"CEL syntax error{where}: {exc}")
            continue
        seen = frozenset({"participant"}) if path.endswith(".eligible") else EVENT_VARIABLES
        if unknown := expression.free_variables - seen:  # a typo (dta.amount) would fail on every event
            yield FieldError(
                path, f"unknown variable(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(seen))}"
            )
            continue
        try:
            check_cost(source)
        except ExpressionError as exc:
            yield FieldError(path, str(exc))


def _constant_errors(path: str, award: dict[str, Any] | None) -> Iterator[FieldError]:
    """What is paid without an event (referrals, prizes, team rewards at closing) cannot be an expression."""
    for currency, amount in (award or {}).items():
        if not isinstance(amount, int | float):
            yield FieldError(f"{path}.{currency}", "a constant amount (there is no event to compute from)")


def _award_errors(path: str, award: dict[str, Any] | None, doc: ProgramDocument) -> Iterator[FieldError]:
    for currency in award or {}:
        if doc.currency(currency) is None:
            yield FieldError(f"{path}.{currency}", f'unknown currency "{currency}"')


def _reference_errors(doc: ProgramDocument) -> Iterator[FieldError]:
    for name in (
        "currencies",
        "metrics",
        "rules",
        "badges",
        "streaks",
        "challenges",
        "leaderboards",
        "rewards",
        "experiments",
    ):
        seen: set[str] = set()
        for i, item in enumerate(getattr(doc, name)):
            if item.key in seen:
                yield FieldError(f"{name}[{i}].key", f'duplicate key "{item.key}"')
            seen.add(item.key)
    metric_keys = {m.key for m in doc.metrics}

    def metric_ref(path: str, key: str | None) -> Iterator[FieldError]:
        if key is not None and key not in metric_keys:
            yield FieldError(path, f'unknown metric "{key}"')

    for i, metric in enumerate(doc.metrics):
        if metric.aggregate != "count" and metric.value is None:
            yield FieldError(f"metrics[{i}].value", f"required for aggregate {metric.aggregate}")
        if metric.aggregate == "count" and metric.value is not None:
            yield FieldError(f"metrics[{i}].value", "a count has no value")
    if doc.levels:
        if (doc.levels.currency is None) == (doc.levels.metric is None):
            yield FieldError("levels", "give exactly one of currency or metric")
        if doc.levels.currency and doc.currency(doc.levels.currency) is None:
            yield FieldError("levels.currency", f'unknown currency "{doc.levels.currency}"')
        yield from metric_ref("levels.metric", doc.levels.metric)
        yield from _ascending("levels.steps", [s.at for s in doc.levels.steps])
    for i, badge in enumerate(doc.badges):
        for g, grade in enumerate(badge.grades):
            for c, criterion in enumerate(grade.when):
                yield from metric_ref(f"badges[{i}].grades[{g}].when[{c}].metric", criterion.metric)
    for i, streak in enumerate(doc.streaks):
        yield from metric_ref(f"streaks[{i}].metric", streak.metric)
    for i, challenge in enumerate(doc.challenges):
        yield from _challenge_errors(f"challenges[{i}]", challenge, doc, metric_ref)
    for i, board in enumerate(doc.leaderboards):
        if (board.metric is None) == (board.currency is None):
            yield FieldError(f"leaderboards[{i}]", "give exactly one of metric or currency")
        yield from metric_ref(f"leaderboards[{i}].metric", board.metric)
        if board.currency and doc.currency(board.currency) is None:
            yield FieldError(f"leaderboards[{i}].currency", f'unknown currency "{board.currency}"')
    if doc.tiers:
        yield from metric_ref("tiers.metric", doc.tiers.metric)
        yield from _ascending("tiers.steps", [s.at for s in doc.tiers.steps])
        for s, step in enumerate(doc.tiers.steps):
            yield from _award_errors(f"tiers.steps[{s}].multiplier", step.multiplier, doc)
    if doc.referrals:
        yield from _award_errors("referrals.award", doc.referrals.award, doc)
        yield from _constant_errors("referrals.award", doc.referrals.award)
    tier_names = {s.name for s in doc.tiers.steps} if doc.tiers else set()
    level_names = {s.name for s in doc.levels.steps} if doc.levels else set()
    for i, reward in enumerate(doc.rewards):
        for currency in reward.cost:
            found = doc.currency(currency)
            if found is None:
                yield FieldError(f"rewards[{i}].cost.{currency}", f'unknown currency "{currency}"')
            elif not found.spendable:
                yield FieldError(f"rewards[{i}].cost.{currency}", f'currency "{currency}" is not spendable')
        if reward.requires and reward.requires.tier and reward.requires.tier not in tier_names:
            yield FieldError(f"rewards[{i}].requires.tier", f'unknown tier "{reward.requires.tier}"')
        if reward.requires and reward.requires.level and reward.requires.level not in level_names:
            yield FieldError(f"rewards[{i}].requires.level", f'unknown level "{reward.requires.level}"')
    if doc.kudos and doc.currency(doc.kudos.currency) is None:
        yield FieldError("kudos.currency", f'unknown currency "{doc.kudos.currency}"')
    yield from _experiment_errors(doc)


def _experiment_errors(doc: ProgramDocument) -> Iterator[FieldError]:
    """Each holdout names exactly one thing it holds out of, that exists, and a count or sum metric to compare."""
    rules, challenges = {r.key for r in doc.rules}, {c.key for c in doc.challenges}
    team_challenges = {c.key: c.mode == "team" for c in doc.challenges}
    for i, experiment in enumerate(doc.experiments):
        path, target = f"experiments[{i}]", experiment.applies_to
        if sum((target.rule is not None, target.challenge is not None, target.program)) != 1:
            yield FieldError(f"{path}.applies_to", "give exactly one of rule, challenge or program: true")
        if target.rule is not None and target.rule not in rules:
            yield FieldError(f"{path}.applies_to.rule", f'unknown rule "{target.rule}"')
        if target.challenge is not None and target.challenge not in challenges:
            yield FieldError(f"{path}.applies_to.challenge", f'unknown challenge "{target.challenge}"')
        elif target.challenge is not None and team_challenges.get(target.challenge):
            yield FieldError(
                f"{path}.applies_to.challenge", "a team challenge: a holdout is of participants (hold out the program)"
            )
        metric = doc.metric(experiment.metric)
        if metric is None:
            yield FieldError(f"{path}.metric", f'unknown metric "{experiment.metric}"')
        elif metric.aggregate not in ("count", "sum"):
            yield FieldError(f"{path}.metric", "a count or sum metric (its value per participant is compared)")


def _ascending(path: str, values: list[float]) -> Iterator[FieldError]:
    if values and values[0] != 0:
        yield FieldError(f"{path}[0].at", "the first step starts at 0")
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            yield FieldError(f"{path}[{i}].at", "steps must rise strictly")


def _challenge_errors(path: str, challenge: Any, doc: ProgramDocument, metric_ref: Any) -> Iterator[FieldError]:
    yield from metric_ref(f"{path}.metric", challenge.metric)
    yield from _award_errors(f"{path}.reward", challenge.reward, doc)
    if challenge.kind == "quest":
        if not challenge.steps:
            yield FieldError(f"{path}.steps", "a quest needs steps")
        for s, step in enumerate(challenge.steps or []):
            yield from metric_ref(f"{path}.steps[{s}].metric", step.metric)
    else:
        if challenge.metric is None:
            yield FieldError(f"{path}.metric", f"a {challenge.kind} needs a metric")
        if challenge.kind == "goal" and challenge.target_ is None:
            yield FieldError(f"{path}.target", "a goal needs a target")
        if challenge.steps:
            yield FieldError(f"{path}.steps", "only a quest has steps")
    yield from _auto_errors(path, challenge)
    if challenge.kind == "competition":
        if not challenge.prizes:
            yield FieldError(f"{path}.prizes", "a competition needs prizes")
        for p, prize in enumerate(challenge.prizes or []):
            yield from _award_errors(f"{path}.prizes[{p}].award", prize.award, doc)
            yield from _constant_errors(f"{path}.prizes[{p}].award", prize.award)
    if challenge.mode == "team":
        yield from _constant_errors(f"{path}.reward", challenge.reward)
    yield from _competition_errors(path, challenge)
    if challenge.eligible and challenge.mode == "team":
        yield FieldError(f"{path}.eligible", "eligibility by attributes is for individual challenges; use teams")
    if challenge.every and (challenge.start or challenge.end):
        yield FieldError(f"{path}.every", "give either every or start/end, not both")
    if challenge.kind == "competition" and not challenge.every and not (challenge.start and challenge.end):
        yield FieldError(f"{path}", "a competition needs every, or start and end")
    if challenge.start and challenge.end and challenge.end < challenge.start:
        yield FieldError(f"{path}.end", "ends before it starts")


def _auto_errors(path: str, challenge: Any) -> Iterator[FieldError]:
    """``target: auto`` is for a recurring individual goal, and says how (``auto``, with its fallback)."""
    if not challenge.auto_target:
        if challenge.auto is not None:
            yield FieldError(f"{path}.auto", "only with target: auto")
        return
    if challenge.kind != "goal" or challenge.mode != "individual" or not challenge.every:
        yield FieldError(f"{path}.target", "auto is for a recurring individual goal (kind goal, every)")
        return
    if challenge.auto is None:
        yield FieldError(f"{path}.auto", "target: auto needs auto: {fallback: …} (periods, factor, floor, cap)")
    elif challenge.auto.cap is not None and challenge.auto.cap < challenge.auto.floor:
        yield FieldError(f"{path}.auto.cap", "below the floor")


def _competition_errors(path: str, challenge: Any) -> Iterator[FieldError]:
    """Race and duel shapes; entrants only where they mean something."""
    if challenge.kind != "competition":
        if challenge.format != "ranking":
            yield FieldError(f"{path}.format", "only a competition has a format")
        if challenge.entrants:
            yield FieldError(f"{path}.entrants", "only a competition has entrants")
        if challenge.kind == "quest" and challenge.mode == "team":
            yield FieldError(f"{path}.mode", "a quest is individual")
        return
    if challenge.reward:
        yield FieldError(f"{path}.reward", "a competition pays prizes, not a reward")
    if challenge.entrants and challenge.mode == "team":
        yield FieldError(f"{path}.entrants", "a team competition names its teams in teams")
    if challenge.format == "race":
        if challenge.target is None:
            yield FieldError(f"{path}.target", "a race needs a target")
        if challenge.mode == "team":
            yield FieldError(f"{path}.mode", "a race is individual (rank teams with a team competition)")
    elif challenge.target is not None:
        yield FieldError(f"{path}.target", "only a race has a target")
    if challenge.format == "duel":
        named = challenge.teams if challenge.mode == "team" else challenge.entrants
        field = "teams" if challenge.mode == "team" else "entrants"
        if not named or len(set(named)) != 2:
            yield FieldError(f"{path}.{field}", "a duel has exactly two different entrants")


def _window_errors(doc: ProgramDocument) -> Iterator[FieldError]:
    for i, badge in enumerate(doc.badges):
        for g, grade in enumerate(badge.grades):
            for c, criterion in enumerate(grade.when):
                if badge.repeatable and ROLLING.match(criterion.window):
                    yield FieldError(
                        f"badges[{i}].grades[{g}].when[{c}].window",
                        "a repeatable badge's criteria use calendar windows",
                    )


def validate_document(data: Any, *, program: str | None = None) -> ProgramDocument:
    """A validated document, or Invalid listing every error with its path."""
    if not isinstance(data, dict):
        raise Invalid("a program document is a mapping", errors=[FieldError("(document)", "expected a mapping")])
    errors = list(_raw_errors(data)) + list(data_errors(data))
    try:
        doc = ProgramDocument.model_validate(data)
    except ValidationError as exc:
        raise Invalid("the program document is invalid", errors=_shape_errors(exc) + errors) from None
    errors += list(_reference_errors(doc)) + list(_window_errors(doc)) + list(sources.errors(doc))
    errors += list(personal.errors(doc))
    if program is not None and doc.program != program:
        errors.append(FieldError("program", f'must equal the program in the URL, "{program}"'))
    if errors:
        raise Invalid("the program document is invalid", errors=errors)
    return doc


def load_document(text: str | bytes, *, program: str | None = None) -> ProgramDocument:
    return validate_document(parse_text(text), program=program)
