"""Moderation: a project's rule sets and every check that uses them.

The rules run in the pure engine (workers/moderation: hyperscan or RE2, linear time); this module
keeps the versions in the database, compiles each version once per process, and is called at the
doors: prompts at submit (a registered submit check of the job spine), outputs as they are made
(`apps.outputs.services.output_create`), dataset rows at import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.jobs.prepared import Prepared
from apps.moderation.models import Door, Flag, RuleSetVersion
from apps.projects.models import Project
from apps.webhooks.services import output_flagged_emit
from workers.moderation import (
    CATEGORIES,
    SEVERITIES,
    Matcher,
    Rule,
    RuleError,
    ScanResult,
    compile_rules,
    default_rules,
    validate_rule,
)

log = logging.getLogger(__name__)

RULE_KINDS = ("keyword", "regex")
MAX_RULES = 5000
# Matched text kept per hit in flags and shown to reviewers.
SPAN_TEXT = 200


# -- rule sets -------------------------------------------------------------------------------


def rule_to_json(rule: Rule, note: str = "") -> dict[str, Any]:
    return {
        "id": str(rule.id),
        "kind": rule.kind,
        "pattern": rule.pattern,
        "category": rule.category,
        "severity": rule.severity,
        "case_sensitive": bool(rule.case_sensitive),
        "note": note,
    }


def rules_from_json(rows: Iterable[Mapping[str, Any]]) -> list[Rule]:
    return [
        Rule(
            id=str(row["id"]),
            kind=row["kind"],
            pattern=row["pattern"],
            category=row["category"],
            severity=row["severity"],
            case_sensitive=bool(row.get("case_sensitive", False)),
        )
        for row in rows
    ]


def ruleset_current(project_id: int) -> RuleSetVersion:
    """The project's newest rule-set version; version 1 (the default set) is written on first use."""
    current = RuleSetVersion.objects.filter(project_id=project_id).order_by("-number").first()
    if current is not None:
        return current
    try:
        with transaction.atomic():
            return RuleSetVersion.objects.create(
                project_id=project_id,
                number=1,
                rules=[rule_to_json(r) for r in default_rules()],
                comment="Default rule set",
            )
    except IntegrityError:  # another request wrote version 1 first
        return RuleSetVersion.objects.get(project_id=project_id, number=1)


class RuleSetInvalid(ValidationError):
    """Rules refused, each error as (row index, field, message)."""

    def __init__(self, errors: list[tuple[int, str, str]]):
        self.errors_by_row = errors
        super().__init__([f"Rule {i + 1}, {f}: {m}" for i, f, m in errors])


def clean_rules(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rules as submitted (from the editor or the API) validated one by one, JSON-ready. Every
    problem is reported with its row and field (a regex error with its position)."""
    if len(rows) > MAX_RULES:
        raise RuleSetInvalid([(MAX_RULES, "rules", f"at most {MAX_RULES} rules per set")])
    errors: list[tuple[int, str, str]] = []
    clean: list[dict[str, Any]] = []
    used: set[str] = set()
    next_id = 1 + max((_user_rule_number(r.get("id")) for r in rows), default=0)
    for index, row in enumerate(rows):
        rule_id = str(row.get("id") or "").strip()
        if not rule_id or rule_id in used:
            rule_id, next_id = f"r{next_id}", next_id + 1
        used.add(rule_id)
        rule = Rule(
            id=rule_id,
            kind=str(row.get("kind") or "keyword"),
            pattern=str(row.get("pattern") or ""),
            category=str(row.get("category") or "custom"),
            severity=str(row.get("severity") or "flag"),
            case_sensitive=bool(row.get("case_sensitive")),
        )
        try:
            validate_rule(rule)
        except RuleError as exc:
            errors.append((index, _error_field(exc), _error_text(exc)))
            continue
        clean.append(rule_to_json(rule, note=str(row.get("note") or "")[:200]))
    if errors:
        raise RuleSetInvalid(errors)
    return clean


def _user_rule_number(rule_id: Any) -> int:
    """3 for "r3" (ids the editor gives new rules), 0 for anything else ("default:12", "")."""
    text = str(rule_id or "")
    return int(text[1:]) if text[:1] == "r" and text[1:].isdigit() else 0


def _error_field(exc: RuleError) -> str:
    message = str(getattr(exc, "message", exc)).lower()
    for name in ("category", "severity", "kind"):
        if name in message.split(":")[0]:
            return name
    return "pattern"


def _error_text(exc: RuleError) -> str:
    message = str(getattr(exc, "message", exc))
    position = getattr(exc, "position", None)
    if position is not None and "position" not in message:
        return f"{message} (at position {position})"
    return message


def ruleset_save(
    *, project: Project, rows: list[Mapping[str, Any]], actor, comment: str = "", request=None
) -> RuleSetVersion:
    """Write the next version of the project's rules (validated first: nothing is written when
    one rule is refused) and audit the change."""
    clean = clean_rules(rows)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").first()
        previous = ruleset_current(project.pk)
        if clean == previous.rules:
            raise ValidationError(
                f"Nothing changed: the rules are the same as version {previous.number}"
            )
        version = RuleSetVersion.objects.create(
            project=project,
            number=previous.number + 1,
            rules=clean,
            comment=comment.strip()[:2000],
            created_by=actor,
        )
        audit_record(
            action="moderation.rules.change",
            actor=actor,
            project=project,
            target=version,
            request=request,
            data={
                "version": version.number,
                "previous": previous.number,
                "comment": version.comment,
                **_rules_diff(previous.rules, clean),
            },
        )
    return version


def _rules_diff(before: list[dict], after: list[dict]) -> dict[str, list[str]]:
    old = {r["id"]: r for r in before}
    new = {r["id"]: r for r in after}
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(i for i in set(old) & set(new) if old[i] != new[i]),
    }


# -- compiled matchers -----------------------------------------------------------------------

_CACHE: OrderedDict[tuple, Matcher] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def _cached(cache: OrderedDict[tuple, Matcher], key: tuple) -> Matcher | None:
    with _CACHE_LOCK:
        matcher = cache.get(key)
        if matcher is not None:
            cache.move_to_end(key)
        return matcher


def _keep(cache: OrderedDict[tuple, Matcher], key: tuple, matcher: Matcher) -> None:
    """Remember `matcher` under `key`, forgetting the least recently used past _CACHE_SIZE."""
    with _CACHE_LOCK:
        cache[key] = matcher
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def matcher_for_version(version: RuleSetVersion) -> Matcher:
    """The compiled rules of one version, built once per process (a 500-rule set compiles in a
    fraction of a second; a check then costs microseconds)."""
    # Keyed by the rules themselves: every project starting from the default rules shares one
    # compiled set (a Hyperscan build is ~0.1 s), and no id reused by a rolled-back database can
    # ever name rules it does not hold.
    key = (hashlib.sha256(json.dumps(version.rules, sort_keys=True).encode()).hexdigest(),)
    matcher = _cached(_CACHE, key)
    if matcher is None:
        matcher = compile_rules(rules_from_json(version.rules))
        _keep(_CACHE, key, matcher)
    return matcher


# The newest version's identity, without its rules (prepared: every submit and output asks).
_CURRENT = Prepared(
    lambda key, *, project_id: (
        RuleSetVersion.objects.filter(project_id=project_id)
        .order_by("-number")
        .values_list("pk", "number", "created_at")[:1]
    ),
    project_id="int",
)
# (database, version id, number, created_at as the database gave it) -> its compiled rules. The
# creation time is part of the key, so an id a rolled-back database hands out again never names
# another version's rules; versions are immutable, so an entry never goes stale.
_CURRENT_MATCHERS: OrderedDict[tuple, Matcher] = OrderedDict()


def project_matcher(project_id: int) -> tuple[Matcher, int]:
    """The project's current compiled rules and their version number: one small query when the
    process has compiled that version already."""
    rows = _CURRENT.execute(project_id=project_id)
    key = (connection.alias, connection.settings_dict.get("NAME"), *rows[0]) if rows else None
    found = _cached(_CURRENT_MATCHERS, key) if key is not None else None
    if found is not None:
        return found, rows[0][1]
    version = ruleset_current(project_id)
    matcher = matcher_for_version(version)
    if key is not None and version.pk == rows[0][0]:
        _keep(_CURRENT_MATCHERS, key, matcher)
    return matcher, version.number


# -- checks ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What the rules (and classifiers) found in a set of named texts."""

    ruleset_version: int | None
    hits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def severity(self) -> str | None:
        severities = {h["severity"] for h in self.hits}
        return "block" if "block" in severities else ("flag" if severities else None)

    @property
    def categories(self) -> list[str]:
        return sorted({h["category"] for h in self.hits})

    def reason(self) -> str:
        first = next((h for h in self.hits if h["severity"] == "block"), None) or (
            self.hits[0] if self.hits else None
        )
        if first is None:
            return ""
        return (
            f"matches the project's {first['category']} rule “{first['text'][:60]}” "
            f"(rule set v{self.ruleset_version})"
        )


def scan_hits(result: ScanResult, field_name: str) -> list[dict[str, Any]]:
    return [
        {**hit, "field": field_name, "text": str(hit.get("text", ""))[:SPAN_TEXT]}
        for hit in result.as_json()
    ]


def check_texts(*, project_id: int, texts: Mapping[str, str]) -> Verdict:
    """Run the project's current rules over each named text (field name -> text)."""
    matcher, number = project_matcher(project_id)
    verdict = Verdict(ruleset_version=number)
    for name, text in texts.items():
        if text:
            verdict.hits.extend(scan_hits(matcher.scan(text), name))
    return verdict


def prompt_submit_check(*, project, user, kind, params) -> dict[str, str]:
    """Registered with the job spine: a prompt that matches a `block` rule refuses the job before
    its row exists (it never reaches a worker); a `flag` rule lets it run, and its outputs are
    flagged when they are made (output_create checks their prompt again)."""
    fields = getattr(kind, "prompt_fields", ())
    texts = {f: str(getattr(params, f, "") or "") for f in fields}
    if not any(texts.values()):
        return {}
    verdict = check_texts(project_id=project.pk, texts=texts)
    blocked = [h for h in verdict.hits if h["severity"] == "block"]
    if not blocked:
        return {}
    audit_record(
        action="moderation.prompt.block",
        actor=user,
        project=project,
        data={
            "kind": kind.name,
            "ruleset_version": verdict.ruleset_version,
            "categories": sorted({h["category"] for h in blocked}),
            "rules": sorted({h["rule_id"] for h in blocked}),
        },
    )
    errors: dict[str, str] = {}
    for hit in blocked:
        errors.setdefault(
            hit["field"],
            _(
                "Refused: this text matches the project's %(category)s rule (“%(text)s”, "
                "characters %(start)d–%(end)d, rule set v%(version)s). Rephrase it, or ask a "
                "project admin."
            )
            % {
                "category": hit["category"],
                "text": hit["text"][:60],
                "start": hit["start"] + 1,
                "end": hit["end"],
                "version": verdict.ruleset_version,
            },
        )
    return errors


# -- classifiers -----------------------------------------------------------------------------

Classifier = Callable[..., list[dict[str, Any]]]


def classifiers() -> list[Classifier]:
    """Deployment-installed classifiers (ATELIER_MODERATION_CLASSIFIERS: dotted paths), off by
    default. Each is called as fn(kind=, text=, image_path=) and returns hits: dicts with
    `category`, `severity` and optionally `score` and `text` (a label)."""
    paths = cast("list[str]", settings.ATELIER.get("MODERATION_CLASSIFIERS") or [])
    return [import_string(p) for p in paths]


def _classifier_hits(*, kind: str, text: str, image_path: str | None) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = []
    for fn in classifiers():
        for hit in fn(kind=kind, text=text, image_path=image_path) or ():
            category = hit.get("category") if hit.get("category") in CATEGORIES else "custom"
            severity = hit.get("severity") if hit.get("severity") in SEVERITIES else "flag"
            hits.append(
                {
                    "field": "classifier",
                    "rule_id": f"classifier:{getattr(fn, '__name__', 'fn')}",
                    "category": category,
                    "severity": severity,
                    "start": 0,
                    "end": 0,
                    "text": str(hit.get("text") or hit.get("label") or category)[:SPAN_TEXT],
                    "score": hit.get("score"),
                }
            )
    return hits


def output_verdict(
    *, project_id: int, kind: str, fields: Mapping[str, Any], image_path: str | None = None
) -> Verdict:
    """The check of an output as it is made: its text, prompt and negative prompt against the
    project's rules, then any installed classifiers."""
    texts = {name: str(fields.get(name) or "") for name in ("text", "prompt", "negative_prompt")}
    verdict = check_texts(project_id=project_id, texts=texts)
    if classifiers():
        verdict.hits.extend(
            _classifier_hits(
                kind=kind, text=texts["text"] or texts["prompt"], image_path=image_path
            )
        )
    return verdict


def flag_record(
    *, project_id: int, verdict: Verdict, door: str = Door.OUTPUT, output=None, dataset_version=None
) -> Flag:
    flag = Flag.objects.create(
        project_id=project_id,
        output=output,
        dataset_version=dataset_version,
        door=door,
        ruleset_version=verdict.ruleset_version,
        severity=verdict.severity or "flag",
        categories=verdict.categories,
        hits=verdict.hits[:200],
    )
    if output is not None:
        # Webhooks' outbox: written in the caller's transaction (output_create's).
        output_flagged_emit(flag=flag, output=output)
    return flag


# -- dataset rows ----------------------------------------------------------------------------


def scan_rows(
    *, project_id: int, rows: Iterable[Mapping[str, Any]], columns: Iterable[str] | None = None
) -> dict[str, Any]:
    """Counts of what the rules flag in dataset rows: {"ruleset_version", "rows", "flagged_rows",
    "by_category": {category: rows}, "by_severity": {...}, "examples": [{"row", "column",
    "category", "text"}] (first 20)}. Row numbers are 1-based, as the import's errors are."""
    matcher, number = project_matcher(project_id)
    wanted = list(columns) if columns is not None else None
    report: dict[str, Any] = {
        "ruleset_version": number,
        "rows": 0,
        "flagged_rows": 0,
        "by_category": {},
        "by_severity": {},
        "examples": [],
    }
    for index, row in enumerate(rows, start=1):
        report["rows"] += 1
        found: dict[str, str] = {}
        for column in wanted if wanted is not None else list(row):
            value = row.get(column)
            if not isinstance(value, str) or not value:
                continue
            for hit in matcher.scan(value, max_hits=5).hits:
                if hit.category not in found or hit.severity == "block":
                    found[hit.category] = hit.severity
                if len(report["examples"]) < 20:
                    report["examples"].append(
                        {
                            "row": index,
                            "column": column,
                            "category": hit.category,
                            "severity": hit.severity,
                            "text": hit.text[:SPAN_TEXT],
                        }
                    )
        if found:
            report["flagged_rows"] += 1
            for category in found:
                report["by_category"][category] = report["by_category"].get(category, 0) + 1
            severity = "block" if "block" in found.values() else "flag"
            report["by_severity"][severity] = report["by_severity"].get(severity, 0) + 1
    return report


def highlight(text: str, hits: Iterable[Mapping[str, Any]]) -> list[tuple[str, dict | None]]:
    """The text cut into (piece, hit-or-None) runs for highlighting matched spans (overlaps: the
    first span wins)."""
    spans = sorted(
        (
            (int(h["start"]), int(h["end"]), dict(h))
            for h in hits
            if h.get("end", 0) > h.get("start", 0)
        ),
        key=lambda s: (s[0], -s[1]),
    )
    pieces: list[tuple[str, dict | None]] = []
    at = 0
    for start, end, hit in spans:
        if start < at or end > len(text):
            continue
        if start > at:
            pieces.append((text[at:start], None))
        pieces.append((text[start:end], hit))
        at = end
    if at < len(text):
        pieces.append((text[at:], None))
    return pieces
