"""Replacement values for found PII: masks, type tags and keyed, format-valid pseudonyms.

A pseudonym is derived with HMAC-SHA256(key, type + value): the same value maps to the same fake
value everywhere the key is used, and without the key nobody can map it back or forward. Fakes keep
the shape of what they replace (an ID with a valid check character, a mobile number with a real
prefix, a Luhn-valid card with the same IIN family and grouping, an address at example.com) and are
never equal to, contained in, or containing the original.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from datetime import date, timedelta

from workers.data.pii_recognizers import luhn_ok, resident_id_check_char

__all__ = ["mask", "pseudonym", "tag"]


def tag(type_: str, value: str) -> str:
    return f"<{type_}>"


# --- masks -------------------------------------------------------------------------------------
def _star_digits(value: str, keep: set[int]) -> str:
    """Replace every digit of `value` with "*" except the digits whose index (among digits) is kept."""
    out, n = [], 0
    for c in value:
        if "0" <= c <= "9":
            out.append(c if n in keep else "*")
            n += 1
        else:
            out.append(c)
    return "".join(out)


def _phone_parts(value: str) -> tuple[int, int, bool]:
    """(index of the first national digit among digits, digit count, is_mobile)."""
    digits = re.sub(r"[^0-9]", "", value)
    lead = 0
    if value.startswith("+86"):
        lead = 2
    elif value.startswith("0086"):
        lead = 4
    national = digits[lead:]
    mobile = len(national) == 11 and national[0] == "1"
    return lead, len(digits), mobile


def _area_digits(value: str, lead: int) -> int:
    """How many national digits of a landline are its area code (with its 0, if written)."""
    national = re.sub(r"[^0-9]", "", value)[lead:]
    zero = 1 if national.startswith("0") else 0
    return zero + (2 if national[zero : zero + 1] in ("1", "2") else 3)


def _mask_phone(value: str) -> str:
    lead, n, mobile = _phone_parts(value)
    if mobile:  # 138****5678
        keep = set(range(lead)) | {lead, lead + 1, lead + 2} | set(range(n - 4, n))
    else:  # 010-****5678: area code and the last four
        keep = set(range(lead + _area_digits(value, lead))) | set(range(n - 4, n))
    return _star_digits(value, keep)


def _mask_email(value: str) -> str:
    local, _, domain = value.rpartition("@")
    return f"{local[0]}***@{domain}"


def _mask_ip(value: str) -> str:
    if ":" in value:
        groups = value.split(":")
        return ":".join([groups[0]] + ["*" * len(g) for g in groups[1:]])
    a, b, _, _ = value.split(".")
    return f"{a}.{b}.*.*"


def _mask_url(value: str) -> str:
    scheme, _, rest = value.partition("://")
    host = rest.partition("@")[2]  # the first "@": a query may hold more ("?ref=a@b")
    return f"{scheme}://***:***@{host}"


def _mask_person(value: str) -> str:
    if value.isascii():
        return " ".join(w[0] + "*" * (len(w) - 1) for w in value.split(" "))
    return value[0] + "*" * (len(value) - 1)


# Full-width digits and hyphen ("０１０－８８８８６６６６") as ASCII: masks and fakes work on ASCII digits.
_HALF_WIDTH = {ord(c): ord(c) - 0xFEE0 for c in "０１２３４５６７８９－（）"}


def _ascii_digits(type_: str, value: str) -> str:
    return value.translate(_HALF_WIDTH) if type_ == "CN_PHONE" else value


def mask(type_: str, value: str) -> str:
    """A masked form that keeps enough to recognize the kind of value: 138****5678."""
    value = _ascii_digits(type_, value)
    if type_ == "CN_RESIDENT_ID":
        return value[:3] + "*" * (len(value) - 7) + value[-4:]
    if type_ == "CN_PHONE":
        return _mask_phone(value)
    if type_ == "BANK_CARD":
        n = sum(c.isdigit() for c in value)
        return _star_digits(value, {0, 1, 2, 3, n - 4, n - 3, n - 2, n - 1})
    if type_ == "EMAIL":
        return _mask_email(value)
    if type_ == "IP_ADDRESS":
        return _mask_ip(value)
    if type_ == "PASSPORT":
        return value[0] + "*" * (len(value) - 3) + value[-2:]
    if type_ == "URL_CREDENTIALS":
        return _mask_url(value)
    if type_ == "PERSON":
        return _mask_person(value)
    return "*" * len(value)


# --- pseudonyms --------------------------------------------------------------------------------
_REGIONS = (
    "110101 110105 110108 120101 130102 310104 310115 320102 320506 330106 340102 350203 370202 "
    "410105 420106 430104 440106 440305 500103 510107 530102 610113"
).split()
_MOBILE_PREFIXES = (
    "130 131 132 133 134 135 136 137 138 139 150 151 152 153 155 156 157 158 159 166 173 175 176 177 "
    "178 180 181 182 183 184 185 186 187 188 189 198 199"
).split()
_FAKE_SURNAMES = (
    "赵钱孙李周吴郑王冯陈卫蒋沈韩杨朱秦许何吕施张孔曹严华金魏陶姜谢邹喻柏窦章苏潘葛范彭鲁"
)
_FAKE_COMPOUND = ("欧阳", "司马", "上官", "诸葛", "东方", "慕容")
_FAKE_GIVEN = "子涵浩然梓萱雨欣一诺宇轩思远嘉怡俊杰晓彤婉清泽若溪明哲书瑶靖雯沐辰佳琪安琳语桐逸凡"
_FAKE_FIRST = (
    "Alex Jordan Taylor Morgan Casey Riley Jamie Avery Quinn Rowan Harper Emerson Finley Hayden "
    "Logan Parker Reese Sawyer Skyler Drew Blair Dana Ellis Kai"
).split()
_FAKE_LAST = (
    "Abbott Barlow Carver Dalton Ellison Fenwick Garland Hartley Irwin Jessop Kendall Lacey Marlow "
    "Norris Oakley Prescott Quimby Radcliffe Sutton Thorne Upton Vance Whitlock Yardley"
).split()


class _Stream:
    """Deterministic pseudo-random numbers from HMAC-SHA256(key, label), extended on demand."""

    def __init__(self, key: bytes, label: str) -> None:
        self._key = key
        self._label = label.encode("utf-8")
        self._block = 0
        self._buf = b""

    def _more(self) -> None:
        msg = self._block.to_bytes(4, "big") + self._label
        self._buf += hmac.new(self._key, msg, hashlib.sha256).digest()
        self._block += 1

    def below(self, n: int) -> int:
        while len(self._buf) < 8:
            self._more()
        x, self._buf = int.from_bytes(self._buf[:8], "big"), self._buf[8:]
        return x % n

    def digits(self, n: int) -> str:
        return "".join(str(self.below(10)) for _ in range(n))

    def hex(self, n: int) -> str:
        return "".join("0123456789abcdef"[self.below(16)] for _ in range(n))

    def choice(self, seq):
        return seq[self.below(len(seq))]


def _replace_digits(template: str, digits: str) -> str:
    it = iter(digits)
    return "".join(next(it) if "0" <= c <= "9" else c for c in template)


def _fake_resident_id(r: _Stream, value: str) -> str:
    born = date(1950, 1, 1) + timedelta(days=r.below(20_000))  # 1950 .. 2004
    first17 = r.choice(_REGIONS) + born.strftime("%Y%m%d") + r.digits(3)
    return first17 + resident_id_check_char(first17)


def _fake_phone(r: _Stream, value: str) -> str:
    lead, n, mobile = _phone_parts(value)
    digits = re.sub(r"[^0-9]", "", value)
    if mobile:
        national = r.choice(_MOBILE_PREFIXES) + r.digits(8)
    else:
        area = digits[lead : lead + _area_digits(value, lead)]
        local_len = len(digits) - lead - len(area)
        national = area + str(2 + r.below(7)) + r.digits(local_len - 1)
    return _replace_digits(value, digits[:lead] + national)


def _fake_card(r: _Stream, value: str) -> str:
    digits = re.sub(r"[^0-9]", "", value)
    body = digits[:2] + r.digits(len(digits) - 3)
    for check in "0123456789":
        if luhn_ok(body + check):
            return _replace_digits(value, body + check)
    raise AssertionError("unreachable: one check digit always fits")


def _fake_email(r: _Stream, value: str) -> str:
    return f"user.{r.hex(10)}@example.com"


def _fake_ip(r: _Stream, value: str) -> str:
    if ":" in value:  # unique-local fd00::/8
        return str(ipaddress.IPv6Address(int("fd" + r.hex(30), 16)))
    return f"10.{r.below(256)}.{r.below(256)}.{1 + r.below(254)}"


def _fake_passport(r: _Stream, value: str) -> str:
    letters = len(value) - len(value.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    return value[:letters] + r.digits(len(value) - letters)


def _fake_url(r: _Stream, value: str) -> str:
    scheme, _, rest = value.partition("://")
    creds, _, host = rest.partition("@")
    user = creds.partition(":")[0]
    fake_user = f"user{r.hex(6)}" if user else ""
    return f"{scheme}://{fake_user}:{r.hex(16)}@{host}"


def _fake_person(r: _Stream, value: str) -> str:
    if value.isascii():
        words = value.split(" ")
        if len(words) == 1:
            return r.choice(_FAKE_LAST)
        return f"{r.choice(_FAKE_FIRST)} {r.choice(_FAKE_LAST)}"
    n = len(value)
    if n >= 4:
        return r.choice(_FAKE_COMPOUND) + r.choice(_FAKE_GIVEN) + r.choice(_FAKE_GIVEN)
    return r.choice(_FAKE_SURNAMES) + "".join(r.choice(_FAKE_GIVEN) for _ in range(n - 1))


_FAKERS = {
    "CN_RESIDENT_ID": _fake_resident_id,
    "CN_PHONE": _fake_phone,
    "BANK_CARD": _fake_card,
    "EMAIL": _fake_email,
    "IP_ADDRESS": _fake_ip,
    "PASSPORT": _fake_passport,
    "URL_CREDENTIALS": _fake_url,
    "PERSON": _fake_person,
}


def _normalized(type_: str, value: str) -> str:
    """What "the same value" means per type: 138-1234-5678 and +86 13812345678 are one number."""
    if type_ in ("CN_PHONE", "BANK_CARD"):
        digits = re.sub(r"[^0-9]", "", value)
        if type_ == "CN_PHONE" and _phone_parts(value)[2]:
            return digits[-11:]
        return digits
    if type_ == "IP_ADDRESS":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    if type_ in ("EMAIL", "CN_RESIDENT_ID", "PASSPORT"):
        return value.lower()
    return value


def pseudonym(type_: str, value: str, key: bytes) -> str:
    """A consistent, format-valid fake for `value` that depends only on (key, type, value)."""
    if not key:
        raise ValueError("pseudonyms need a non-empty project secret key")
    value = _ascii_digits(type_, value)
    base = f"{type_}\x00{_normalized(type_, value)}"
    folded = value.lower()
    for attempt in range(100):
        fake = _FAKERS[type_](_Stream(key, f"{attempt}\x00{base}"), value)
        f = fake.lower()
        if f not in folded and folded not in f:
            return fake
    raise AssertionError(f"no pseudonym found for a {type_}")  # pragma: no cover
