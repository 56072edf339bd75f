"""Content moderation rules and the linear-time engine that runs them (pure: no Django, Celery).

    matcher = compile_rules(rules)           # once per rule-set version
    result = matcher.scan(text)              # per prompt, output or dataset row
    result.severity, result.categories, result.hits

`rules` holds the rule model and the pattern dialect, `engine` the matcher (hyperscan or RE2),
`defaults` the rule set a new project starts with.
"""

from workers.moderation.defaults import default_rules
from workers.moderation.engine import (
    Hit,
    Matcher,
    ScanResult,
    available_engines,
    compile_rules,
    validate_rule,
)
from workers.moderation.rules import CATEGORIES, KINDS, SEVERITIES, Rule, RuleError

__all__ = [
    "CATEGORIES",
    "KINDS",
    "SEVERITIES",
    "Hit",
    "Matcher",
    "Rule",
    "RuleError",
    "ScanResult",
    "available_engines",
    "compile_rules",
    "default_rules",
    "validate_rule",
]
