"""Moderation rules and the one dialect both engines read (pure: no Django, no Celery).

A rule's pattern is written as users write regexes (Python `re` syntax) or as a plain keyword.
`translate` parses it with Python's own parser, which gives exact error positions and a tree, then
writes the tree out again in a small syntax that RE2 and Hyperscan read the same way: every class
spelt as explicit ranges, every group non-capturing, every escape explicit. That is what makes the
two engines agree, and why no backtracking engine ever runs a user's pattern: Python only parses.

A keyword is a literal. An edge that is an ASCII letter, digit or _ must sit on a word boundary
("ass" does not match "class", "scam" matches in "这是scam吗"); Chinese matches as a substring.
Spaces inside a keyword match any run of whitespace. Both kinds ignore case unless the rule is
case-sensitive.

A regex means what Python's `re` says, except:

* ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII (as with ``re.ASCII``, and as in RE2 and PCRE):
  Unicode classes make Hyperscan databases slow to build, and RE2 has no Unicode ``\\b``. An ASCII
  ``\\b`` also suits mixed text: ``\\bscam\\b`` matches in ``这是scam吗``. For Chinese, write
  ranges such as ``[\\u4e00-\\u9fff]``.
* case-insensitive matching folds every letter (É and é), not only ASCII;
* ``$`` is the end of the text (Python also accepts it before a final newline), unless ``(?m)``.

Backreferences, look-arounds, atomic groups and possessive quantifiers need a backtracking
engine and are refused, as is a pattern that matches the empty text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typeshed describes the parser under its pre-3.11 names
    import sre_constants as _c
    import sre_parse as _parser
else:
    from re import _constants as _c
    from re import _parser

__all__ = [
    "CATEGORIES",
    "KINDS",
    "MAX_PATTERN",
    "SEVERITIES",
    "Rule",
    "RuleError",
    "translate",
]

# OpenAI's moderation categories, plus "pii" and the project's own "custom".
CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
    "illicit",
    "illicit/violent",
    "pii",
    "custom",
)
SEVERITIES: tuple[str, ...] = ("block", "flag")
KINDS: tuple[str, ...] = ("keyword", "regex")
MAX_PATTERN = 1000


@dataclass(frozen=True)
class Rule:
    id: int | str  # the caller's id (a database key), reported back in hits
    kind: str  # "keyword" | "regex"
    pattern: str
    category: str
    severity: str  # "block" | "flag"
    case_sensitive: bool = False


class RuleError(ValueError):
    """A rule that cannot be used; `position` is a 0-based offset into the pattern, if known."""

    def __init__(
        self, message: str, *, position: int | None = None, rule_id: int | str | None = None
    ) -> None:
        self.message = message
        self.position = position
        self.rule_id = rule_id
        where = "" if position is None else f" (at position {position})"
        who = "" if rule_id is None else f"rule {rule_id}: "
        super().__init__(f"{who}{message}{where}")


# --- the shared dialect ------------------------------------------------------------------------
_TOP = 0x10FFFF
# ASCII classes as ranges, and their complements, so that each also works inside [...] and [^...].
_DIGIT = "0-9"
_WORD = "0-9A-Za-z_"
_SPACE = r"\x{9}-\x{d}\x{20}"
_NOT_DIGIT = r"\x{0}-\x{2f}\x{3a}-\x{10ffff}"
# \W leaves out U+017F (long s) and U+212A (Kelvin sign): case-insensitive engines fold them to
# s and k, and [\W] would then match those letters.
_NOT_WORD = (
    r"\x{0}-\x{2f}\x{3a}-\x{40}\x{5b}-\x{5e}\x{60}"
    r"\x{7b}-\x{17e}\x{180}-\x{2129}\x{212b}-\x{10ffff}"
)
_NOT_SPACE = r"\x{0}-\x{8}\x{e}-\x{1f}\x{21}-\x{10ffff}"
# Keyword gaps: any run of whitespace, Unicode spaces included (U+3000 in Chinese text).
_GAP = (
    r"[\x{9}-\x{d}\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+"
)

_CATEGORY_RANGES = {
    _c.CATEGORY_DIGIT: _DIGIT,
    _c.CATEGORY_NOT_DIGIT: _NOT_DIGIT,
    _c.CATEGORY_WORD: _WORD,
    _c.CATEGORY_NOT_WORD: _NOT_WORD,
    _c.CATEGORY_SPACE: _SPACE,
    _c.CATEGORY_NOT_SPACE: _NOT_SPACE,
}
_ASCII_WORD = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")

_REFUSED = {
    "backreference": "backreferences need a backtracking engine; match the text itself instead",
    "lookaround": "look-ahead and look-behind need a backtracking engine; match the text itself",
    "atomic": "atomic groups and possessive quantifiers need a backtracking engine",
    "conditional": "conditional groups (?(1)...) need a backtracking engine",
}
_REFUSED_OPS = {
    _c.GROUPREF: "backreference",
    _c.GROUPREF_EXISTS: "conditional",
    _c.ASSERT: "lookaround",
    _c.ASSERT_NOT: "lookaround",
    _c.ATOMIC_GROUP: "atomic",
    _c.POSSESSIVE_REPEAT: "atomic",
}


def _char(code: int) -> str:
    """One code point, escaped for both engines, inside or outside a class."""
    if 0xD800 <= code <= 0xDFFF:
        raise RuleError("a lone surrogate (\\ud800-\\udfff) cannot occur in UTF-8 text")
    c = chr(code)
    if c in _ASCII_WORD:
        return c
    if code < 0x7F and c.isprintable() and c != " ":
        return "\\" + c
    if code > 0x7F and c.isprintable():
        return c
    return f"\\x{{{code:x}}}"


def _class(items: list) -> str:
    negate = False
    parts = []
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            parts.append(_char(av))
        elif op is _c.RANGE:
            parts.append(f"{_char(av[0])}-{_char(av[1])}")
        elif op is _c.CATEGORY:
            parts.append(_CATEGORY_RANGES[av])
        else:  # the parser writes nothing else in a class
            raise RuleError(f"unsupported class item {op}")
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _repeat(op, av, flags: int) -> str:
    low, high, sub = av
    body = f"(?:{_emit(sub, flags)})"
    if high == _c.MAXREPEAT:
        quant = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    elif low == high:
        quant = f"{{{low}}}"
    else:
        quant = "?" if (low, high) == (0, 1) else f"{{{low},{high}}}"
    return body + quant + ("?" if op is _c.MIN_REPEAT else "")


def _at(av, flags: int) -> str:
    multiline = flags & re.MULTILINE
    if av is _c.AT_BEGINNING:
        return "(?m:^)" if multiline else r"\A"
    if av is _c.AT_END:
        return "(?m:$)" if multiline else r"\z"
    return {
        _c.AT_BEGINNING_STRING: r"\A",
        _c.AT_END_STRING: r"\z",
        _c.AT_BOUNDARY: r"\b",
        _c.AT_NON_BOUNDARY: r"\B",
    }[av]


def _group(av, flags: int) -> str:
    _group_id, add, remove, sub = av
    inner = _emit(sub, (flags | add) & ~remove)
    if add & re.IGNORECASE:
        return f"(?i:{inner})"
    if remove & re.IGNORECASE:
        return f"(?-i:{inner})"
    return f"(?:{inner})"


def _emit(tree, flags: int) -> str:
    out = []
    for op, av in tree:
        if op is _c.LITERAL:
            out.append(_char(av))
        elif op is _c.NOT_LITERAL:
            out.append(f"[^{_char(av)}]")
        elif op is _c.ANY:
            out.append(r"(?s:.)" if flags & re.DOTALL else r"[^\n]")
        elif op is _c.IN:
            out.append(_class(av))
        elif op is _c.BRANCH:
            out.append("(?:" + "|".join(_emit(alt, flags) for alt in av[1]) + ")")
        elif op is _c.SUBPATTERN:
            out.append(_group(av, flags))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            out.append(_repeat(op, av, flags))
        elif op is _c.AT:
            out.append(_at(av, flags))
        elif op is _c.CATEGORY:
            out.append(f"[{_CATEGORY_RANGES[av]}]")
        elif op in _REFUSED_OPS:
            raise RuleError(_REFUSED[_REFUSED_OPS[op]])
        else:
            raise RuleError(f"unsupported regex construct {op}")
    return "".join(out)


# --- refused constructs, with their place in the pattern ---------------------------------------
def _refused_in(tree) -> str | None:
    """The first construct of `tree` that needs backtracking, as a key of `_REFUSED`."""
    for op, av in tree:
        if op in _REFUSED_OPS:
            return _REFUSED_OPS[op]
        subs = []
        if op is _c.BRANCH:
            subs = av[1]
        elif op is _c.SUBPATTERN:
            subs = [av[3]]
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            subs = [av[2]]
        for sub in subs:
            found = _refused_in(sub)
            if found:
                return found
    return None


_GROUP_OPENERS = (
    ("(?<=", "lookaround"),
    ("(?<!", "lookaround"),
    ("(?=", "lookaround"),
    ("(?!", "lookaround"),
    ("(?P=", "backreference"),
    ("(?>", "atomic"),
    ("(?(", "conditional"),
)
_POSSESSIVE = re.compile(r"[*+?}]\+")


def _position_of(pattern: str, construct: str) -> int | None:
    """Where `construct` first occurs in `pattern`, skipping escapes and classes."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if construct == "backreference" and nxt.isdigit() and nxt != "0":
                octal = pattern[i + 1 : i + 4]
                if not (len(octal) == 3 and all(d in "01234567" for d in octal)):
                    return i
            i += 2
            continue
        if c == "[":
            i = _class_end(pattern, i)
            continue
        for opener, kind in _GROUP_OPENERS:
            if kind == construct and pattern.startswith(opener, i):
                return i
        if construct == "atomic" and _POSSESSIVE.match(pattern, i) and i > 0:
            return i + 1
        i += 1
    return None


def _class_end(pattern: str, start: int) -> int:
    """The offset just past the class that opens at `start`."""
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":  # a leading ] is a literal
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
        elif pattern[i] == "]":
            return i + 1
        else:
            i += 1
    return len(pattern)


# --- rules to engine syntax --------------------------------------------------------------------
def _keyword(pattern: str) -> str:
    words = pattern.split()
    body = _GAP.join("".join(_char(ord(c)) for c in word) for word in words)
    # Word boundaries only on an edge that is an ASCII letter, digit or _: "ass" must not match
    # "class", while a Chinese keyword is a plain substring (Chinese has no spaces).
    head = r"\b" if words[0][0] in _ASCII_WORD else ""
    tail = r"\b" if words[-1][-1] in _ASCII_WORD else ""
    return head + body + tail


# Groups nested deeper than this are refused before parsing: the parser and _emit recurse per
# level, and the interpreter's recursion limit is not ours to rely on (py_ecc, py-evm and torch's
# dynamo raise it to 100,000 on import, where a deep pattern would overflow the C stack).
MAX_GROUP_DEPTH = 100


def _group_depth(pattern: str) -> tuple[int, int]:
    """(deepest group nesting, offset where it is reached), escapes and classes skipped."""
    depth = deepest = at = i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _class_end(pattern, i)
            continue
        if char == "(":
            depth += 1
            if depth > deepest:
                deepest, at = depth, i
        elif char == ")":
            depth = max(depth - 1, 0)
        i += 1
    return deepest, at


def _regex(pattern: str) -> tuple[str, bool]:
    """(pattern in the shared dialect, caseless from an inline global flag)."""
    deepest, at = _group_depth(pattern)
    if deepest > MAX_GROUP_DEPTH:
        raise RuleError(
            f"the regex is nested too deeply (more than {MAX_GROUP_DEPTH} groups)", position=at
        )
    try:
        return _regex_in_dialect(pattern)
    except RecursionError:  # a last resort: deep in some other way than groups
        raise RuleError("the regex is nested too deeply") from None


def _regex_in_dialect(pattern: str) -> tuple[str, bool]:
    try:
        tree = _parser.parse(pattern, 0)
    except re.error as exc:
        raise RuleError(f"invalid regex: {exc.msg}", position=exc.pos) from None
    except ValueError as exc:  # incompatible flags, e.g. (?L) in a str pattern
        raise RuleError(f"invalid regex: {exc}") from None
    refused = _refused_in(tree)
    if refused:
        raise RuleError(_REFUSED[refused], position=_position_of(pattern, refused))
    if tree.getwidth()[0] == 0:
        raise RuleError("the regex matches empty text: every text would match it")
    flags = tree.state.flags
    return _emit(tree, flags), bool(flags & re.IGNORECASE)


def translate(rule: Rule) -> str:
    """`rule` in the dialect both engines read, with its case rule applied; raises RuleError."""
    if rule.kind not in KINDS:
        raise RuleError(f"unknown kind {rule.kind!r}: use keyword or regex")
    if rule.category not in CATEGORIES:
        raise RuleError(f"unknown category {rule.category!r}: use one of {', '.join(CATEGORIES)}")
    if rule.severity not in SEVERITIES:
        raise RuleError(f"unknown severity {rule.severity!r}: use block or flag")
    if not isinstance(rule.pattern, str) or not rule.pattern.strip():
        raise RuleError("empty pattern")
    if len(rule.pattern) > MAX_PATTERN:
        raise RuleError(f"pattern longer than {MAX_PATTERN} characters")
    if rule.kind == "keyword":
        body, caseless = _keyword(rule.pattern), False
    else:
        body, caseless = _regex(rule.pattern)
    return f"(?i:{body})" if caseless or not rule.case_sensitive else body
