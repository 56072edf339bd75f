"""The PII recognizers: a `re` pattern, multi-pattern triggers, a gate and a validator each.

Each `Recognizer` is written once and used by both engines of `pii`:

* `pattern` (Python `re`, group `v` = the value) with its boundaries, then `validate` (checksum,
  date, network, nearby word), is what decides a finding, in both engines;
* `triggers` are the same match written plainly for Hyperscan (no look-arounds); a trigger hit on
  a raw JSONL line is what makes the Hyperscan engine look at that line, and a hit in one of its
  strings is where it searches `pattern` (in `window` around the hit, not the whole string).

A recognizer's triggers must fire wherever it can report something (a superset): that is what
makes the two engines agree. So triggers use only explicit classes (`[0-9]`, never `\\d`, `\\s`
or `.`), never need a character that JSON escapes (`"`, `\\`, control characters) and treat an
escape like `\\n` as the boundary it stands for; a validator that reads context outside its match
has a trigger on that context; lines with `\\u` or `\\/` escapes run every recognizer. The tests
check the rule on every match of a fuzzed corpus, as text and as raw JSON bytes. For the window
search, every pattern has a bounded length (checked when a `Recognizer` is made) and every match
has a hit of its own triggers within `window` of its start (tested on the evaluation set).

Validators only reject; none needs more context than `MAX_CONTEXT` characters around its match.
The PERSON recognizers and their tables are in `pii_names` and `pii_data.names`.
"""

from __future__ import annotations

import ipaddress
import re

# The stdlib's own pattern parser, for a pattern's widest match (no public API gives it).
import re._parser as re_parser  # type: ignore[import-not-found]
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from operator import mul

from workers.data import pii_names as names

__all__ = [
    "MAX_CONTEXT",
    "RECOGNIZERS",
    "TYPES",
    "Recognizer",
    "luhn_ok",
    "resident_id_check_char",
]

# Types, most specific first: when two findings overlap, the earlier type wins (then the longer).
TYPES: tuple[str, ...] = (
    "URL_CREDENTIALS",
    "EMAIL",
    "CN_RESIDENT_ID",
    "BANK_CARD",
    "PASSPORT",
    "CN_PHONE",
    "IP_ADDRESS",
    "PERSON",
)
RANK = {t: i for i, t in enumerate(TYPES)}

Validator = Callable[[str, str, int], bool]
"""validator(value, text, start) -> keep the candidate?"""


@dataclass(frozen=True)
class Recognizer:
    """One kind of value: a `re` pattern (group `v` is the value) and the triggers that cover it.

    `pattern` starts with a character class and checks its left boundary with a look-behind
    *after* that first character, so `re` can skip ahead on the class: about five times faster
    than a leading look-behind. `triggers` is the same match written plainly, without look-arounds.
    `gate` is a cheap `re` that finds something every match needs ("@", four digits in a row): a
    string it does not find in is skipped without running `pattern`.
    """

    name: str
    type: str
    pattern: str
    triggers: tuple[str, ...]
    gate: str
    caseless_triggers: tuple[str, ...] = ()
    validate: Validator | None = None
    # How far a trigger hit may end before the match's start and after its end (a context word
    # the validator looks for); 0, 0 when every trigger hit lies inside the match.
    reach_before: int = 0
    reach_after: int = 0
    # The farthest a trigger hit inside the match may end from the match's start, where that is
    # less than the longest match (a label or a title at the start); 0: the longest match.
    hit_reach: int = 0
    rank: int = field(init=False)
    max_width: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", RANK[self.type])
        width = re_parser.parse(self.pattern).getwidth()[1]
        if width >= re_parser.MAXREPEAT:
            raise ValueError(f"recognizer {self.name}: its pattern must have a bounded length")
        object.__setattr__(self, "max_width", width)

    @property
    def window(self) -> tuple[int, int]:
        """(back, forward): a match starts in [hit - back, hit + forward) of one of its hits.

        A hit inside the match ends after the match's first character (forward 0); a context
        word before it ends at most `reach_before` characters before the match.
        """
        back = (self.hit_reach or self.max_width) + self.reach_after + 1
        return back, self.reach_before + 1 if self.reach_before else 0

    @property
    def trigger_patterns(self) -> tuple[tuple[str, bool], ...]:
        """(pattern, caseless) pairs for the multi-pattern engine."""
        return tuple((p, False) for p in self.triggers) + tuple(
            (p, True) for p in self.caseless_triggers
        )

    def compile(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


# --- boundaries --------------------------------------------------------------------------------
# Used right after a pattern's first character (hence the trailing "."): digits glued to letters,
# to other digits or to a decimal point belong to something longer.
AFTER_FIRST_NOT_ALNUM = r"(?<![0-9A-Za-z_].)"
AFTER_FIRST_DIGITS_LEFT = r"(?<![0-9A-Za-z_].)(?<![0-9]\..)"
DIGITS_RIGHT = r"(?![0-9A-Za-z_])(?!\.[0-9])"
# Triggers run on raw JSON bytes, where "\n2023..." is a backslash, an "n" and digits: an escape
# counts as a word boundary there, as the newline it stands for does in the text.
_B = r"(?:\\[bfnrt]|\b)"
FOUR_DIGITS = "[0-9]{4}"  # ID, card, passport and phone numbers all have four digits in a row
HAN = "一-鿿"  # CJK Unified Ideographs U+4E00..U+9FFF (literal: valid for re and Hyperscan UTF-8)


# --- checksums and validators ------------------------------------------------------------------
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# GB/T 2260 province-level codes (first two digits of a resident ID).
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 "
    "71 81 82".split()
)


def resident_id_check_char(first17: str) -> str:
    """GB 11643 check character for the first 17 digits of a resident ID."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


_ID_WEIGHTS_SUM = sum(_ID_WEIGHTS)


def _check_char_of_ascii_digits(first17: str) -> str:
    """`resident_id_check_char` for 17 ASCII digits (what the pattern matched), without a Python
    step per digit: the validator runs on every ID-shaped number of a PII-dense file."""
    total = sum(map(mul, first17.encode("ascii"), _ID_WEIGHTS)) - 48 * _ID_WEIGHTS_SUM
    return _ID_CHECK[total % 11]


@lru_cache(maxsize=65_536)
def _birth_date_ok(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def _resident_id_ok(value: str, text: str, start: int) -> bool:
    v = value.upper()
    return (
        v[:2] in _PROVINCES
        and _birth_date_ok(v[6:14])
        and _check_char_of_ascii_digits(v[:17]) == v[17]
    )


# Every second digit from the right is doubled, and a two-digit result counts as its digit sum.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def luhn_ok(digits: str) -> bool:
    """The Luhn check of a string of ASCII digits (summed in C: no Python step per digit)."""
    kept, doubled = digits[-1::-2], digits[-2::-2].translate(_LUHN_DOUBLED)
    total = sum(kept.encode("ascii")) + sum(doubled.encode("ascii")) - 48 * len(digits)
    return total % 10 == 0


def _card_network_ok(d: str) -> bool:
    """Is the IIN (first digits) of a real card network, with a length it issues?"""
    n = len(d)
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    if "51" <= d[:2] <= "55" or "2221" <= d[:4] <= "2720":  # Mastercard
        return n == 16
    if d[:2] in ("34", "37"):  # American Express
        return n == 15
    if d[:2] == "62" or d[:2] == "81":  # UnionPay (incl. the 81 range)
        return 16 <= n <= 19
    if d[:2] == "35":  # JCB
        return 16 <= n <= 19
    if d[:2] in ("36", "38", "39") or "300" <= d[:3] <= "305":  # Diners
        return 14 <= n <= 19
    if d[:4] == "6011" or d[:2] == "65" or "644" <= d[:3] <= "649":  # Discover
        return 16 <= n <= 19
    if d[:2] == "60" or d[:2] == "56" or d[:2] == "58":  # domestic debit (Maestro-like, 60xxxx)
        return 16 <= n <= 19
    return False


def _bank_card_ok(value: str, text: str, start: int) -> bool:
    digits = value.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and _card_network_ok(digits) and luhn_ok(digits)


# A dotted quad after one of these words is a version or a section number, not an address
# ("version 1.2.3.4", "§ 3.1.2.4", "pkg==2.0.1.15"); so is one followed by 版/节/条/章/款
# ("5.3.3.20版本", "第3.1.2.4条").
_NOT_IP_WORDS = frozenset(
    "version ver release rel build firmware fw v section sec clause chapter article art para "
    "paragraph rule item schema spec rfc iso chrome firefox safari edge msie ios android windows "
    "macos python node java sdk api schedule appendix annex exhibit eq eqn equation fig figure "
    "table formula theorem lemma definition step part oid".split()
)
# An identifier that names a version ("__version__", "APP_VERSION") before "= " or ":".
_VERSION_NAME = re.compile(r"(?<![A-Za-z])(?i:version|ver|release|build)_*$")
_NOT_IP_MARKS = ("版本", "版本号", "固件", "§", "第", "条款", "章节", "参见")
_VERSION_PINS = ("==", "~=", ">=", "<=", "!=")
_NOT_IP_AFTER = "版节条章款"
_IP_CONTEXT = 24


def _ipv4_ok(value: str, text: str, start: int) -> bool:
    if value == "0.0.0.0":
        return False
    for octet in value.split("."):
        if int(octet) > 255 or (len(octet) > 1 and octet[0] == "0"):
            return False
    before = text[max(0, start - _IP_CONTEXT) : start]
    if before.endswith(_VERSION_PINS):
        return False
    if before[-1:] == "/" and before[-2:-1].isalpha():
        return False  # a product token's version: "Chrome/122.0.6261.112", "web/3.10.2.7"
    before = before.rstrip(" .:：=/#\"'(（[")
    if _VERSION_NAME.search(before):
        return False
    if before.endswith(_NOT_IP_MARKS):
        return False
    i = len(before)
    while i and before[i - 1].isascii() and before[i - 1].isalpha():
        i -= 1
    if before[i:].lower() in _NOT_IP_WORDS:  # the whole last word: "start 10.0.0.1" is an address
        return False
    after = text[start + len(value) : start + len(value) + 2].lstrip(" ")
    return not after or after[0] not in _NOT_IP_AFTER


def _ipv6_ok(value: str, text: str, start: int) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    groups = [g for g in value.split(":") if g]
    # "::", "::1" and the like are not about a person; two real groups is the least we report.
    return len(groups) >= 2


_PASSPORT_BEFORE = 40  # characters before the number that may hold the context word ...
_PASSPORT_AFTER = 12  # ... or after it ("新版 EA1234567 护照")
PASSPORT_WORDS = "护照|旅行证件|证件|passport|Passport|PASSPORT|travel document|Travel document"
_passport_word = re.compile(PASSPORT_WORDS)
# A product, part or order word between the passport word and the number makes it a code.
_product_word = re.compile(
    r"(?i)型号|货号|批号|编号|订单|序列号|产品|商品|物品|sku|model|p/n|part|item|order|serial|\bsn\b"
)


# A travel permit or residence document is not a passport (往来台湾通行证 T12345678, visa numbers).
_permit_word = re.compile(r"(?i)通行证|签注|签证|居留|permit|visa|residence")
_PERMIT_BEFORE = 12  # a permit word this close before the number names it, whatever came earlier


def _passport_shape_ok(value: str) -> bool:
    """Not a placeholder: "000000000", "E11111111" have at most two distinct characters."""
    return len(set(value.replace(" ", ""))) > 2


def _near_passport_word(value: str, text: str, start: int) -> bool:
    if not _passport_shape_ok(value):
        return False
    window = max(0, start - _PASSPORT_BEFORE)
    if _permit_word.search(text, max(window, start - _PERMIT_BEFORE), start):
        return False
    words = list(_passport_word.finditer(text, window, start))
    if words:
        between = (words[-1].end(), start)
        return _product_word.search(text, *between) is None and not _permit_word.search(
            text, *between
        )
    after = start + len(value)
    return (
        _passport_word.search(text, after, after + _PASSPORT_AFTER) is not None
        and _product_word.search(text, window, start) is None
    )


def _manifest_passport_ok(value: str, text: str, start: int) -> bool:
    """A passport-format number after an airline-style name on a manifest line."""
    return _passport_shape_ok(value)


# A number right after one of these words is a code, not a phone ("SKU 13800138001", "发票代码：
# 044031900111", "serial 042021001234"), as is one glued to a suffix ("13800138001-BLK") or one
# digit nine times in a row ("19999999999": a range bound, a placeholder).
_CODE_WORDS = (
    "sku", "serial", "s/n", "sn", "invoice", "order", "tracking", "waybill", "part", "model",
    "item", "code", "发票代码", "发票号码", "发票号", "订单号", "订单编号", "单号", "编号", "型号", "货号",
    "批号", "序列号", "条码", "条形码", "代码", "流水号",
)  # fmt: skip
_CODE_SUFFIXES = ("number", "no", "#")
_CODE_SEPARATORS = " \t:：#.=-"
_REPEATED = re.compile(r"([0-9])\1{8}")
_CODE_REACH = 20


def _after_code_word(text: str, start: int) -> bool:
    """Does a code word end right before `start` (only separators between)?"""
    before = text[max(0, start - _CODE_REACH) : start].rstrip(_CODE_SEPARATORS).lower()
    for suffix in _CODE_SUFFIXES:  # "Order No. 13800138000", "serial number ..."
        if before.endswith(suffix):
            before = before[: -len(suffix)].rstrip(_CODE_SEPARATORS) or before
            break
    if not before.endswith(_CODE_WORDS):
        return False
    word = next(w for w in _CODE_WORDS if before.endswith(w))
    left = before[: -len(word)][-1:]
    return not (word.isascii() and left.isascii() and left.isalnum())  # "sn", not "json"


def _phone_ok(value: str, text: str, start: int) -> bool:
    if _REPEATED.search(value):
        return False
    end = start + len(value)
    if text.startswith("-", end) and text[end + 1 : end + 2].isalpha():
        return False  # "13800138001-BLK"
    return not _after_code_word(text, start)


def _url_credentials_ok(value: str, text: str, start: int) -> bool:
    """Not a template: "postgres://USER:PASSWORD@HOST" (a user and password in capitals)."""
    userinfo = value.split("://", 1)[1].split("@", 1)[0]
    user, _, password = userinfo.partition(":")
    return not (_PLACEHOLDER.fullmatch(password) and (not user or _PLACEHOLDER.fullmatch(user)))


_PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")


# --- the recognizers ---------------------------------------------------------------------------
_URL_USER = "[A-Za-z0-9._~%!$&'()+,;=-]"  # no "*": a masked "***:***@host" is not a credential
_URL_PASS = "[A-Za-z0-9._~%!$&'()*+,;=:-]"
# Every pattern has a bounded length (see `max_width`), which lets the Hyperscan engine search
# only a window around each trigger hit.
_HOST = (
    r"(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,10}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)
# The path and query belong to the credential URL (a token often sits in the query); trailing
# sentence punctuation does not.
_URL_PATH = r"(?:[/?#](?:[A-Za-z0-9._~%!$&'()*+,;=:@/?#-]{0,1023}[A-Za-z0-9_~%$&*+=/#-])?)?"

# Passport formats, after the first character (a letter or a digit): CN E/G + 8 digits, E + letter
# + 7 digits, US/UK 9 digits, RU "75 1234567", FR "19AV12345", DE "C01X00T47" (9 letters and
# digits: two digits at least, the first a letter), VN "C1234567", two letters + 7 digits.
_PASSPORT_REST = (
    "(?:(?<=[A-Z])[A-Z]?[0-9]{6,9}"
    "|(?<=[0-9])(?:[0-9]{8}|[0-9][ ][0-9]{7}|[0-9][A-Z]{2}[0-9]{5})"
    "|(?<=[CFGHJKLMNPRTVWXYZ])(?=[0-9A-Z]{0,7}[0-9][0-9A-Z]{0,7}[0-9])"
    "(?=[0-9A-Z]{0,7}[A-Z])[0-9A-Z]{8})"
)
_EMAIL_LOCAL = "[A-Za-z0-9._%+-]"
_EMAIL_DOMAIN = r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}"
_ID_BODY = r"[0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
_IPV4 = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"
_IPV6_TAIL = rf"(?:{_IPV4}|[0-9A-Fa-f]{{1,4}})?"
_PHONE_REST = r"[3-9][0-9](?:[ -]?[0-9]{4}){2}"
# Landlines: +86 / 0086 with the area code's 0 dropped (an optional "(0)"), or 0 + area code;
# 2-digit areas (10, 2x) have 8-digit local numbers, 3-digit ones 7 or 8; groups of 4+4, 3+4, 4+3
# or none; an extension ("转 123", "ext. 45") is part of the number.
_LL_SEP = "[ -]"
_LL_AREA = "(?:10|2[0-9]|[3-9][0-9]{2})"
_LL_LOCAL = "[2-9](?:[0-9]{6,7}|[0-9]{2,3}[ -][0-9]{4}|[0-9]{3}[ -][0-9]{3})"
_LL_INTL = (
    "(?:\\(0\\)[ -]?)?(?:(?:10|2[0-9])[ -]?[1-9][0-9]{3}[ -]?[0-9]{4}"
    "|[3-9][0-9]{2}[ -]?[1-9](?:[0-9]{6,7}|[0-9]{2,3}[ -][0-9]{4}|[0-9]{3}[ -][0-9]{3}))"
)
_LL_DOMESTIC = (
    f"(?:(?:10|2[0-9])[ -]?[2-9][0-9]{{3}}[ -]?[0-9]{{4}}|[3-9][0-9]{{2}}[ -]?{_LL_LOCAL})"
)
_LL_EXT = r"(?:[ ]?(?:转|分机|[Ee]xt\.?|EXT\.?)[ ]?[0-9]{1,5})?"
# "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof" with the first letter already consumed (see the
# note on boundaries: a leading class lets `re` skip ahead).
_EN_TITLE_AFTER_FIRST = (
    r"[MDP](?<![A-Za-z].)(?:(?<=M)(?:rs|r|s|iss|x)|(?<=D)r|(?<=P)rof)\.?[ ]{1,2}"
)

# The farthest any validator or look-around reads from its match (the passport word).
MAX_CONTEXT = max(_PASSPORT_BEFORE, _PASSPORT_AFTER, _IP_CONTEXT, _CODE_REACH, names.CONTEXT)

RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        name="url_credentials",
        type="URL_CREDENTIALS",
        pattern=(
            rf"(?P<v>[A-Za-z](?<![A-Za-z0-9+.-].)[A-Za-z0-9+.-]{{1,15}}://"
            rf"{_URL_USER}{{0,64}}:{_URL_PASS}{{1,128}}@{_HOST}{_URL_PATH})"
        ),
        triggers=(rf"://{_URL_USER}*:{_URL_PASS}+@",),
        gate="://",
        validate=_url_credentials_ok,
        hit_reach=16 + 3 + 64 + 1 + 128 + 1,  # scheme, "://", user, ":", password, "@"
    ),
    Recognizer(
        name="email",
        type="EMAIL",
        pattern=(
            # Not the user of a URL ("https://key@o1.ingest.sentry.io") nor a git remote
            # ("git@github.com:owner/repo").
            rf"(?P<v>{_EMAIL_LOCAL}(?<!{_EMAIL_LOCAL}.)(?<!/.){_EMAIL_LOCAL}{{0,63}}@{_EMAIL_DOMAIN})"
            r"(?![A-Za-z-])(?!:[A-Za-z0-9_~/])"
        ),
        triggers=(rf"{_EMAIL_LOCAL}@[A-Za-z0-9-]+\.[A-Za-z0-9-]",),
        gate="@",
        hit_reach=64 + 1 + 63 + 2,  # local part, "@", first domain label, "." and one more
    ),
    Recognizer(
        name="cn_resident_id",
        type="CN_RESIDENT_ID",
        pattern=rf"(?P<v>[1-8]{AFTER_FIRST_DIGITS_LEFT}{_ID_BODY}){DIGITS_RIGHT}",
        # A trailing \b: one hit per number, not one per digit of a longer run.
        triggers=(rf"{_B}[1-8]{_ID_BODY}\b",),
        gate=FOUR_DIGITS,
        validate=_resident_id_ok,
    ),
    Recognizer(
        name="bank_card",
        type="BANK_CARD",
        pattern=(
            rf"(?P<v>[0-9]{AFTER_FIRST_DIGITS_LEFT}"
            rf"(?:[0-9]{{12,18}}|[0-9]{{3,5}}(?:[ -][0-9]{{3,6}}){{2,4}})){DIGITS_RIGHT}"
        ),
        # Groups of 4 to 6 digits first: "6222 0200 ...", "62284 80012 3456 78903".
        triggers=(rf"{_B}[0-9]{{13,19}}\b", rf"{_B}[0-9]{{4,6}}[ -][0-9]{{3,6}}[ -][0-9]{{3}}"),
        gate=FOUR_DIGITS,
        validate=_bank_card_ok,
    ),
    Recognizer(
        name="passport_near_word",
        type="PASSPORT",
        pattern=rf"(?P<v>[0-9A-Z]{AFTER_FIRST_NOT_ALNUM}{_PASSPORT_REST})(?![0-9A-Za-z_])",
        # The validator needs the word; the number alone proves nothing (product codes).
        triggers=("护照", "旅行证件", "证件"),
        caseless_triggers=("passport", "travel document"),
        gate=PASSPORT_WORDS,
        validate=_near_passport_word,
        reach_before=_PASSPORT_BEFORE,
        reach_after=_PASSPORT_AFTER,
    ),
    Recognizer(
        name="passport_on_manifest",
        type="PASSPORT",
        # "WANG/FANG MS  E12930478": a passenger list's passport column, after the name.
        pattern=(
            rf"[A-Z]{AFTER_FIRST_NOT_ALNUM}[A-Z]{{1,19}}/[A-Z]{{2,20}}(?:[ ][A-Z]){{0,2}}"
            r"(?:[ ](?:MRS|MR|MSTR|MS|MISS|DR))?[ \t]{1,4}"
            rf"(?P<v>[0-9A-Z](?<![0-9A-Za-z_].){_PASSPORT_REST})(?![0-9A-Za-z_])"
        ),
        triggers=(r"[A-Z]/[A-Z]{2}",),
        gate="[A-Z]/[A-Z]",
        validate=_manifest_passport_ok,
    ),
    Recognizer(
        name="cn_mobile",
        type="CN_PHONE",
        pattern=(
            rf"(?P<v>[+01]{AFTER_FIRST_DIGITS_LEFT}"
            rf"(?:(?<=\+)86[ -]?1|(?<=0)086[ -]?1|(?<=1)){_PHONE_REST}){DIGITS_RIGHT}"
        ),
        triggers=(rf"1{_PHONE_REST}\b",),
        gate=FOUR_DIGITS,
        validate=_phone_ok,
    ),
    Recognizer(
        name="cn_landline",
        type="CN_PHONE",
        pattern=(
            rf"(?P<v>[(0+]{AFTER_FIRST_DIGITS_LEFT}"
            rf"(?:(?<=\+)86{_LL_SEP}?{_LL_INTL}|(?<=0)(?:086{_LL_SEP}?{_LL_INTL}|{_LL_DOMESTIC})"
            rf"|(?<=\()0{_LL_AREA}\)[ -]?{_LL_LOCAL}){_LL_EXT}){DIGITS_RIGHT}"
        ),
        triggers=(
            r"86[ -]?(?:\(0\)[ -]?)?(?:10|2[0-9]|[3-9][0-9]{2})[ -]?[1-9][0-9]{2}",
            rf"{_B}0(?:10|2[0-9]|[3-9][0-9]{{2}})[ -]?[2-9][0-9]{{2}}",
            r"\(0[1-9][0-9]{1,2}\)[ -]?[2-9][0-9]{2}",
        ),
        gate="[0-9]{3}",
        validate=_phone_ok,
    ),
    Recognizer(
        name="cn_landline_fullwidth",
        type="CN_PHONE",
        pattern=(
            "(?P<v>(?:[（(]０[１-９][０-９]{1,2}[）)]|０[１-９][０-９]{1,2})[－ -]?[２-９][０-９]{6,7}"
            r"(?:[ ]?(?:转|分机|[Ee]xt\.?|EXT\.?)[ ]?[０-９0-9]{1,5})?)(?![０-９0-9])"
        ),
        triggers=("０[１-９][０-９]{1,2}[）)]?[－ -]?[２-９][０-９]{6}",),
        gate="[０-９]{4}",
    ),
    Recognizer(
        name="ipv4",
        type="IP_ADDRESS",
        pattern=(
            # After a letter and a period too: "relay=mx1.hotmail.com.52.101.68.4".
            r"(?P<v>[0-9](?<![0-9A-Za-z_].)(?<![^A-Za-z]\..)[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3})"
            rf"{DIGITS_RIGHT}"
        ),
        triggers=(rf"{_B}[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]",),
        gate=r"[0-9]\.[0-9]",
        validate=_ipv4_ok,
    ),
    Recognizer(
        name="ipv6",
        type="IP_ADDRESS",
        pattern=(
            r"(?P<v>[0-9A-Fa-f:](?<![0-9A-Za-z_:.].)(?:(?<=:)|[0-9A-Fa-f]{0,3}:)"
            rf"(?:[0-9A-Fa-f]{{0,4}}:){{1,6}}{_IPV6_TAIL})(?![0-9A-Za-z_:])(?!\.[0-9])"
        ),
        triggers=(":[0-9A-Fa-f]{0,4}:",),
        gate=":[0-9A-Fa-f]{0,4}:",
        validate=_ipv6_ok,
    ),
    Recognizer(
        name="zh_name_after_label",
        type="PERSON",
        pattern=f"{names.ZH_BEFORE}(?P<v>{names.ZH_LABELED_NAME})",
        triggers=(f"{names.ZH_BEFORE}(?:{names.ZH_SURNAME_ANY}|[小老])",),
        gate="|".join(names.ZH_LABELS),
        validate=names.zh_name_ok,
    ),
    Recognizer(
        name="zh_name_before_title",
        type="PERSON",
        pattern=names.ZH_TITLED,
        triggers=(names.ZH_TITLED_TRIGGER,),
        gate=names.ZH_AFTER,
        validate=names.zh_titled_ok,
    ),
    Recognizer(
        name="en_name_after_title",
        type="PERSON",
        pattern=f"{_EN_TITLE_AFTER_FIRST}(?P<v>{names.EN_NAME})(?![A-Za-z])",
        triggers=(rf"{names.EN_TITLE}[A-Z](?:[a-z]|['’][A-Z]|[A-Z])",),
        gate="M[rsx]|Miss|Dr|Prof",
        validate=names.en_titled_ok,
        hit_reach=len("Prof. ") + 1 + 3,  # the title, its spaces and the name's first letters
    ),
    Recognizer(
        name="en_name_after_label",
        type="PERSON",
        pattern=names.EN_AFTER_STRONG,
        triggers=names.EN_LABEL_TRIGGERS_STRONG,
        gate=names.EN_LABEL_GATE_STRONG,
        validate=names.en_strong_label_ok,
        hit_reach=names.EN_LABEL_REACH,  # the trigger is the label the match starts with
    ),
    Recognizer(
        name="en_name_after_greeting",
        type="PERSON",
        pattern=names.EN_AFTER_WEAK,
        triggers=names.EN_LABEL_TRIGGERS_WEAK,
        gate=names.EN_LABEL_GATE_WEAK,
        validate=names.en_weak_label_ok,
        hit_reach=names.EN_LABEL_REACH,
    ),
    Recognizer(
        name="en_name_known_given",
        type="PERSON",
        pattern=names.EN_FREE,
        triggers=(names.EN_FREE_TRIGGER,),
        gate="[a-z] [A-Z]",
        validate=names.en_free_ok,
        hit_reach=names.EN_FREE_REACH,
    ),
    Recognizer(
        name="pinyin_name",
        type="PERSON",
        pattern=names.PINYIN_PAIR,
        triggers=names.PINYIN_TRIGGERS,
        gate="[A-Za-z] [A-Z][a-z]",
        validate=names.pinyin_name_ok,
    ),
    *(
        Recognizer(
            name=form.name,
            type="PERSON",
            pattern=form.pattern,
            triggers=form.triggers,
            gate=form.gate,
            validate=form.validate,
            reach_after=form.reach_after,
            hit_reach=form.hit_reach,
        )
        for form in names.MORE_PERSON_FORMS
    ),
)
