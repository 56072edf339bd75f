"""The PII recognizers: a `re` pattern, multi-pattern triggers, a gate and a validator each.

Each `Recognizer` is written once and used by both engines of `pii`:

* `pattern` (Python `re`, group `v` = the value) with its boundaries, then `validate` (checksum,
  date, network, nearby word), is what decides a finding, in both engines;
* `triggers` are the same match written plainly for Hyperscan (no look-arounds); a trigger hit on
  a raw JSONL line is what makes the Hyperscan engine run `pattern` on that line's strings.

A recognizer's triggers must fire wherever it can report something (a superset): that is what
makes the two engines agree. So triggers use only explicit classes (`[0-9]`, never `\\d`, `\\s`
or `.`), never need a character that JSON escapes (`"`, `\\`, control characters) and treat an
escape like `\\n` as the boundary it stands for; a validator that reads context outside its match
has a trigger on that context; lines with `\\u` or `\\/` escapes run every recognizer. The tests
check the rule on every match of a fuzzed corpus, as text and as raw JSON bytes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

__all__ = ["RECOGNIZERS", "TYPES", "Recognizer", "luhn_ok", "resident_id_check_char"]

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
    rank: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", RANK[self.type])

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


def _birth_date_ok(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def _resident_id_ok(value: str, text: str, start: int) -> bool:
    v = value.upper()
    return (
        v[:2] in _PROVINCES and _birth_date_ok(v[6:14]) and resident_id_check_char(v[:17]) == v[17]
    )


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
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


def _ipv4_ok(value: str, text: str, start: int) -> bool:
    for octet in value.split("."):
        if int(octet) > 255 or (len(octet) > 1 and octet[0] == "0"):
            return False
    return True


def _ipv6_ok(value: str, text: str, start: int) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    groups = [g for g in value.split(":") if g]
    # "::", "::1" and the like are not about a person; two real groups is the least we report.
    return len(groups) >= 2


_PASSPORT_CONTEXT = 24  # characters before the number that may hold the context word
PASSPORT_WORDS = "护照|passport|Passport|PASSPORT"
_passport_word = re.compile(PASSPORT_WORDS)


def _near_passport_word(value: str, text: str, start: int) -> bool:
    return _passport_word.search(text, max(0, start - _PASSPORT_CONTEXT), start) is not None


# --- names -------------------------------------------------------------------------------------
# Common surnames; characters that are mostly function words in running text (于, 和, 向, 时, 常 ...)
# are left out on purpose: "患者于昨日" must not read as a name.
SINGLE_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武"
    "戴莫孔汤傅柳欧阎葛聂郁岳柯殷齐庞倪洪童包祝鲁穆申耿卜成佘温"
)
COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "上官",
    "诸葛",
    "东方",
    "皇甫",
    "令狐",
    "慕容",
    "司徒",
    "夏侯",
    "尉迟",
    "公孙",
    "长孙",
    "宇文",
    "轩辕",
    "端木",
    "独孤",
    "南宫",
    "西门",
)
# Characters that (almost) never appear in a given name but often follow a surname-like character
# in clinical text: "患者高血压", "患者陈旧性", "医生常说", "谢谢先生".
NOT_IN_GIVEN_NAME = (
    "的了在是有和与及或因而但出现患病症状痛疼咳热血压糖尿检查治疗术药物服用说问答请可能会要应该需经"
    "这那其此男女岁年日周前后时间感到觉自诉述无不未已曾近来去做行于为被把对从向以等主史疸细胞旧性上下"
    "常度面季节部分次左右侧位体身肝肺肾胃肠头脑眼耳鼻口手足腿脚背腰颈胸腹皮肤骨关炎肿瘤癌重何某家属"
    "情况既往入院门诊就复吃喝睡护士们都也还又很太最更非较约多少几个名例每该它他她您你我咨询议注意"
    "如果怎么什吗呢吧啊呀嗯哦谢老先女医师科室号码电话手机话姓联系人址"
)


def _han_class_without(excluded: str) -> str:
    """A character class of all CJK ideographs except `excluded`, as literal ranges."""
    out: list[str] = []
    lo = 0x4E00
    for cp in sorted({ord(c) for c in excluded}):
        if cp > lo:
            out.append(chr(lo) if cp - 1 == lo else f"{chr(lo)}-{chr(cp - 1)}")
        lo = cp + 1
    if lo <= 0x9FFF:
        out.append(f"{chr(lo)}-{chr(0x9FFF)}")
    return "[" + "".join(out) + "]"


GIVEN = _han_class_without(NOT_IN_GIVEN_NAME)
ZH_NAME = f"(?:{'|'.join(COMPOUND_SURNAMES)}|[{SINGLE_SURNAMES}]){GIVEN}{{1,2}}"
ZH_NAME_MIN = f"(?:{'|'.join(COMPOUND_SURNAMES)}|[{SINGLE_SURNAMES}]){GIVEN}"  # for triggers
# The same name with its first character already consumed (compound surnames tried first).
_ZH_NAME_FIRST = "[" + SINGLE_SURNAMES + "".join(sorted({c[0] for c in COMPOUND_SURNAMES})) + "]"
_ZH_NAME_REST = (
    "(?:"
    + "|".join(f"(?<={c[0]}){c[1:]}" for c in COMPOUND_SURNAMES)
    + f"|(?<=[{SINGLE_SURNAMES}])){GIVEN}{{1,2}}"
)
ZH_CONTEXT_WORDS = ("患者", "病人", "病患", "患儿", "姓名", "联系人", "医生", "大夫")
ZH_BEFORE = f"(?:{'|'.join(ZH_CONTEXT_WORDS)})[:：]?[ 　]{{0,2}}"
ZH_AFTER = "(?:先生|女士|医生|大夫)"
# Before a name followed by its title: not another ideograph, unless it is one that usually
# precedes a name ("联系张三先生", "感谢李四医生"). Checked after the name's first character.
_ZH_TITLE_LEFT = f"(?:(?<![{HAN}].)|(?<=[是叫和与给找向请问系对跟由被让及位谢].))"

EN_WORD = r"[A-Z](?:[a-z]+(?:[A-Z][a-z]+)?|['’][A-Z][a-z]+)(?:-[A-Z][a-z]+)?"
EN_NAME = f"{EN_WORD}(?:[ ]{EN_WORD})?"
EN_TITLE = r"(?:Mrs|Mr|Ms|Dr|Prof)\.?[ ]{1,2}"
_EN_TITLE_AFTER_FIRST = r"[MDP](?<![A-Za-z].)(?:(?<=M)(?:rs|r|s)|(?<=D)r|(?<=P)rof)\.?[ ]{1,2}"


# --- the recognizers ---------------------------------------------------------------------------
_URL_USER = "[A-Za-z0-9._~%!$&'()+,;=-]"  # no "*": a masked "***:***@host" is not a credential
_URL_PASS = "[A-Za-z0-9._~%!$&'()*+,;=:-]"
_HOST = r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"

_EMAIL_LOCAL = "[A-Za-z0-9._%+-]"
_EMAIL_DOMAIN = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
_ID_BODY = r"[0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
_IPV4 = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"
_IPV6_TAIL = rf"(?:{_IPV4}|[0-9A-Fa-f]{{1,4}})?"
_PHONE_REST = r"[3-9][0-9](?:[ -]?[0-9]{4}){2}"

RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        name="url_credentials",
        type="URL_CREDENTIALS",
        pattern=(
            rf"(?P<v>[A-Za-z](?<![A-Za-z0-9+.-].)[A-Za-z0-9+.-]{{1,15}}://"
            rf"{_URL_USER}*:{_URL_PASS}+@{_HOST})"
        ),
        triggers=(rf"://{_URL_USER}*:{_URL_PASS}+@",),
        gate="://",
    ),
    Recognizer(
        name="email",
        type="EMAIL",
        pattern=(
            rf"(?P<v>{_EMAIL_LOCAL}(?<!{_EMAIL_LOCAL}.){_EMAIL_LOCAL}*@{_EMAIL_DOMAIN})"
            r"(?![A-Za-z-])"
        ),
        triggers=(rf"{_EMAIL_LOCAL}@[A-Za-z0-9-]+\.[A-Za-z0-9-]",),
        gate="@",
    ),
    Recognizer(
        name="cn_resident_id",
        type="CN_RESIDENT_ID",
        pattern=rf"(?P<v>[1-8]{AFTER_FIRST_DIGITS_LEFT}{_ID_BODY}){DIGITS_RIGHT}",
        triggers=(rf"{_B}[1-8]{_ID_BODY}",),
        gate=FOUR_DIGITS,
        validate=_resident_id_ok,
    ),
    Recognizer(
        name="bank_card",
        type="BANK_CARD",
        pattern=(
            rf"(?P<v>[0-9]{AFTER_FIRST_DIGITS_LEFT}"
            rf"(?:[0-9]{{12,18}}|[0-9]{{3}}(?:[ -][0-9]{{3,6}}){{2,4}})){DIGITS_RIGHT}"
        ),
        triggers=(rf"{_B}[0-9]{{13}}", rf"{_B}[0-9]{{4}}[ -][0-9]{{3,6}}[ -][0-9]{{3}}"),
        gate=FOUR_DIGITS,
        validate=_bank_card_ok,
    ),
    Recognizer(
        name="cn_passport",
        type="PASSPORT",
        pattern=(
            rf"(?P<v>[EG]{AFTER_FIRST_NOT_ALNUM}(?:[0-9]{{8}}|(?<=E)[A-HJ-NP-Z][0-9]{{7}}))"
            r"(?![0-9A-Za-z_])"
        ),
        triggers=(rf"{_B}[EG][0-9]{{8}}", rf"{_B}E[A-HJ-NP-Z][0-9]{{7}}"),
        gate=FOUR_DIGITS,
    ),
    Recognizer(
        name="passport_near_word",
        type="PASSPORT",
        pattern=rf"(?P<v>[A-Z]{AFTER_FIRST_NOT_ALNUM}[A-Z]?[0-9]{{6,9}})(?![0-9A-Za-z_])",
        # The validator needs the word; the number alone proves nothing.
        triggers=("护照",),
        caseless_triggers=("passport",),
        gate=PASSPORT_WORDS,
        validate=_near_passport_word,
    ),
    Recognizer(
        name="cn_mobile",
        type="CN_PHONE",
        pattern=(
            rf"(?P<v>[+01]{AFTER_FIRST_DIGITS_LEFT}"
            rf"(?:(?<=\+)86[ -]?1|(?<=0)086[ -]?1|(?<=1)){_PHONE_REST}){DIGITS_RIGHT}"
        ),
        triggers=(rf"1{_PHONE_REST}",),
        gate=FOUR_DIGITS,
    ),
    Recognizer(
        name="cn_landline",
        type="CN_PHONE",
        pattern=(
            rf"(?P<v>[(0]{AFTER_FIRST_DIGITS_LEFT}"
            r"(?:(?<=\()0[1-9][0-9]{1,2}\)[ -]?|(?<=0)[1-9][0-9]{1,2}[ -])[2-9][0-9]{6,7})"
            rf"{DIGITS_RIGHT}"
        ),
        triggers=(
            r"\(0[1-9][0-9]{1,2}\)[ -]?[2-9][0-9]{6}",
            rf"{_B}0[1-9][0-9]{{1,2}}[ -][2-9][0-9]{{6}}",
        ),
        gate=FOUR_DIGITS,
    ),
    Recognizer(
        name="ipv4",
        type="IP_ADDRESS",
        pattern=(
            r"(?P<v>[0-9](?<![0-9A-Za-z_.].)[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3})"
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
        name="zh_name_after_word",
        type="PERSON",
        pattern=f"{ZH_BEFORE}(?P<v>{ZH_NAME})",
        triggers=(f"{ZH_BEFORE}{ZH_NAME_MIN}",),
        gate="|".join(ZH_CONTEXT_WORDS),
    ),
    Recognizer(
        name="zh_name_before_title",
        type="PERSON",
        pattern=f"(?P<v>{_ZH_NAME_FIRST}{_ZH_TITLE_LEFT}{_ZH_NAME_REST}){ZH_AFTER}",
        triggers=(f"{ZH_NAME}{ZH_AFTER}",),
        gate=ZH_AFTER,
    ),
    Recognizer(
        name="en_name_after_title",
        type="PERSON",
        pattern=f"{_EN_TITLE_AFTER_FIRST}(?P<v>{EN_NAME})(?![A-Za-z])",
        triggers=(rf"{EN_TITLE}[A-Z](?:[a-z]|['’][A-Z])",),
        gate="M[rs]|Dr|Prof",
    ),
)
