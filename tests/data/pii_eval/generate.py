"""A seeded generator of labeled PII evaluation records (zh, en and mixed documents).

    .venv/bin/python -m tests.data.pii_eval.generate --split test --n 2000 > eval.jsonl

Each record is a realistic document (medical record, bank letter, delivery slip, support chat,
insurance form, HR letter, code or log) built from a hand-written template whose slots are filled
from the generator's own vocabularies (`vocab`, `templates`), never from the detector's tables.
PII slots are recorded as `(start, end, type)`; decoy slots (versions, section numbers, product
codes, order numbers, dates, amounts, streets named after surnames ...) are not PII and carry no
span. `split="dev"` draws only from the dev half of every vocabulary and template list,
`split="test"` only from the test half: tune on dev, score on test.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass, field

from tests.data.pii_eval import templates, vocab

__all__ = ["Record", "generate"]

SLOT = re.compile(r"\{([A-Z0-9_]+)\}")
DOMAIN_WEIGHTS = {
    "medical": 3,
    "bank": 3,
    "delivery": 2,
    "support": 3,
    "insurance": 2,
    "hr": 2,
    "code": 2,
    "decoy": 2,
}


@dataclass
class Record:
    id: str
    domain: str
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"id": self.id, "domain": self.domain, "text": self.text, "spans": self.spans}


def luhn_ok(digits: str) -> bool:
    """The Luhn check, written again here so the generator shares no code with the detector."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def resident_id_check_char(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


def _half(seq, split: str):
    return seq[0::2] if split == "dev" else seq[1::2]


class _Filler:
    """Fills one slot kind from one split's vocabularies; returns (text, PII type or None)."""

    def __init__(self, r: random.Random, split: str) -> None:
        self.r = r
        self.surnames = _half(list(vocab.ZH_SURNAMES), split)
        self.compound = _half(vocab.ZH_COMPOUND, split)
        self.given = _half(list(vocab.ZH_GIVEN), split)
        self.first = _half(vocab.EN_FIRST, split)
        self.last = _half(vocab.EN_LAST, split)
        self.py_sur = _half(vocab.PINYIN_SURNAMES, split)
        self.py_given = _half(vocab.PINYIN_GIVEN, split)
        self.streets = _half(vocab.STREETS_ZH, split)
        self.cities = _half(vocab.CITIES_ZH, split)
        self.companies = _half(vocab.COMPANIES, split)
        self.companies_zh = _half(vocab.COMPANIES_ZH, split)
        self.domains = _half(vocab.DOMAINS, split)
        self.hosts = _half(vocab.HOSTS, split)
        self.products = _half(vocab.PRODUCTS, split)

    def digits(self, n: int) -> str:
        return "".join(self.r.choice("0123456789") for _ in range(n))

    # --- PII ---
    def NAME_ZH(self) -> str:
        r = self.r
        sur = r.choice(self.compound) if r.random() < 0.12 else r.choice(self.surnames)
        return sur + "".join(r.choice(self.given) for _ in range(1 if r.random() < 0.3 else 2))

    def SUR_ZH(self) -> str:
        return self.r.choice(self.surnames)

    def NAME_EN(self) -> str:
        r = self.r
        first, last = r.choice(self.first), r.choice(self.last)
        x = r.random()
        if x < 0.2:
            return f"{first} {r.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        if x < 0.27:
            return f"{first} {last}-{r.choice(self.last)}"
        return f"{first} {last}"

    def LAST_EN(self) -> str:
        return self.r.choice(self.last)

    def NAME_PY(self) -> str:
        r = self.r
        sur, given = r.choice(self.py_sur), r.choice(self.py_given)
        return r.choice((f"{sur} {given}", f"{given} {sur}", f"{sur.upper()} {given}"))

    def MOBILE(self) -> str:
        r = self.r
        n = r.choice("3456789") + self.digits(9)
        n = "1" + (n if n[0] != "4" else "8" + n[1:])
        return r.choice(
            (
                n,
                n,
                f"{n[:3]}-{n[3:7]}-{n[7:]}",
                f"{n[:3]} {n[3:7]} {n[7:]}",
                f"+86 {n}",
                f"+86-{n[:3]}-{n[3:7]}-{n[7:]}",
                f"0086 {n}",
            )
        )

    def LANDLINE(self) -> str:
        r = self.r
        area = r.choice(("10", "21", "20", "22", "755", "571", "28", "27", "25", "512", "29"))
        local = r.choice("23456789") + self.digits(7 if len(area) == 2 or r.random() < 0.6 else 6)
        a, b = local[:4], local[4:]
        form = r.randrange(12)
        if form == 0:
            out = f"+86 {area} {a} {b}"
        elif form == 1:
            out = f"+86-{area}-{local}"
        elif form == 2:
            out = f"0086-{area}-{local}"
        elif form == 3:
            full = f"0{area}－{local}"
            out = full.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})
        elif form == 4:
            out = f"0{area}-{a} {b}"
        elif form == 5:
            out = f"0{area}{local}"
        elif form == 6:
            out = f"(0{area}) {local}"
        elif form == 7:
            out = f"0{area} {local}"
        else:
            out = f"0{area}-{local}"
        if r.random() < 0.15:
            out += r.choice(
                (f" 转 {self.digits(3)}", f" ext. {self.digits(2)}", f"转{self.digits(4)}")
            )
        return out

    def ID(self) -> str:
        r = self.r
        region = r.choice(("110105", "310104", "440305", "510107", "330106", "420106", "610113"))
        body = f"{region}{r.randint(1950, 2005)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}"
        first = body + self.digits(3)
        return first + resident_id_check_char(first)

    def CARD(self) -> str:
        r = self.r
        prefix, n = r.choice((("6222", 19), ("6217", 19), ("6228", 19), ("4367", 16), ("5187", 16)))
        body = prefix + self.digits(n - 5)
        card = next(body + c for c in "0123456789" if luhn_ok(body + c))
        if r.random() < 0.4:
            card = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
        return card

    def EMAIL(self) -> str:
        r = self.r
        local = r.choice(
            (
                r.choice(self.py_sur).lower() + "." + r.choice(self.py_given).lower(),
                r.choice(self.first).lower() + self.digits(2),
                r.choice(self.first)[0].lower() + r.choice(self.last).lower(),
                self.digits(9),
            )
        )
        return f"{local.replace(chr(39), '')}@{r.choice(self.domains)}"

    def IP(self) -> str:
        r = self.r
        return r.choice(
            (
                f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}",
                f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
                f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            )
        )

    def IP6(self) -> str:
        r = self.r
        groups = [f"{r.randint(0, 0xFFFF):x}" for _ in range(6)]
        return (
            r.choice(("2001:db8::", "fe80::")) + ":".join(groups[:4])
            if r.random() < 0.6
            else ("240e:3b7:" + ":".join(groups))
        )

    def PASSPORT(self) -> str:
        r = self.r
        return r.choice(
            (
                "E" + self.digits(8),
                "E" + r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + self.digits(7),
                "G" + self.digits(8),
                r.choice("KPS") + self.digits(7),
            )
        )

    def URL_CRED(self) -> str:
        r = self.r
        scheme = r.choice(("https", "postgres", "mysql", "redis", "amqp", "ftp", "mongodb"))
        user = r.choice(("admin", "deploy", "svc_app", "root", r.choice(self.first).lower()))
        password = r.choice(("s3cr3t", "hunter2", "P%40ssw0rd", "x7Kq9zL2", "changeme!"))
        path = r.choice(("", "/app", "/v1/data?sslmode=require", "/repo.git", "/0", "/inbox?x=1"))
        return f"{scheme}://{user}:{password}@{r.choice(self.hosts)}{path}"

    # --- decoys and filler ---
    def DECOY_VERSION(self) -> str:
        r = self.r
        parts = [r.randint(0, 12), r.randint(0, 9), r.randint(0, 30), r.randint(0, 200)]
        return ".".join(str(p) for p in parts[: r.choice((3, 4, 4))])

    def DECOY_SECTION(self) -> str:
        r = self.r
        return ".".join(str(r.randint(1, 9)) for _ in range(r.choice((3, 4, 4))))

    def DECOY_ORDER(self) -> str:
        r = self.r
        return r.choice(
            (
                f"{r.randint(2019, 2025)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}{self.digits(8)}",
                f"DD{self.digits(14)}",
                f"NO.{self.digits(10)}",
                f"{r.randint(2019, 2025)}-{self.digits(8)}",
            )
        )

    def DECOY_TRACKING(self) -> str:
        r = self.r
        return r.choice(("SF", "YT", "JD", "ZTO")) + self.digits(r.choice((12, 13, 15)))

    def DECOY_PRODUCT(self) -> str:
        return re.sub(
            r"\{n(\d)\}", lambda m: self.digits(int(m.group(1))), self.r.choice(self.products)
        )

    def URL_PLAIN(self) -> str:
        r = self.r
        host = r.choice([h for h in self.hosts if not h[0].isdigit()])
        return f"https://{host}/docs/{r.randint(1, 99)}?ref=a@b"

    def DATE(self) -> str:
        r = self.r
        y, m, d = r.randint(2018, 2026), r.randint(1, 12), r.randint(1, 28)
        return r.choice((f"{y}-{m:02d}-{d:02d}", f"{y}年{m}月{d}日", f"{y}.{m:02d}.{d:02d}"))

    def TIME(self) -> str:
        return f"{self.r.randint(7, 21):02d}:{self.r.randint(0, 59):02d}"

    def AMOUNT(self) -> str:
        r = self.r
        return r.choice(
            (f"{r.randint(1, 99_999):,}.{r.randint(0, 99):02d}", str(r.randint(5, 9999)))
        )

    def N(self) -> str:
        return str(self.r.randint(1, 9))

    def N4(self) -> str:
        return self.digits(4)

    def AGE(self) -> str:
        return str(self.r.randint(18, 90))

    def BP(self) -> str:
        return f"{self.r.randint(100, 170)}/{self.r.randint(60, 100)}"

    def G(self) -> str:
        return f"{self.r.randint(4, 12)}.{self.r.randint(0, 9)}"

    def T(self) -> str:
        return f"{self.r.randint(36, 40)}.{self.r.randint(0, 9)}"

    def CITY(self) -> str:
        return self.r.choice(self.cities)

    def STREET(self) -> str:
        return self.r.choice(self.streets)

    def EN_STREET(self) -> str:
        return self.r.choice(
            (
                "George Street",
                "Baker Street",
                "Oak Avenue",
                "Washington Road",
                "Park Lane",
                "Lincoln Way",
            )
        )

    def COMPANY(self) -> str:
        return self.r.choice(self.companies)

    def COMPANY_ZH(self) -> str:
        return self.r.choice(self.companies_zh)


# PII slot kinds and the type they are labeled with; every other slot is a decoy or filler.
PII_SLOTS = {
    "NAME_ZH": "PERSON",
    "SUR_ZH": "PERSON",
    "NAME_EN": "PERSON",
    "LAST_EN": "PERSON",
    "NAME_PY": "PERSON",
    "MOBILE": "CN_PHONE",
    "LANDLINE": "CN_PHONE",
    "ID": "CN_RESIDENT_ID",
    "CARD": "BANK_CARD",
    "EMAIL": "EMAIL",
    "IP": "IP_ADDRESS",
    "IP6": "IP_ADDRESS",
    "PASSPORT": "PASSPORT",
    "URL_CRED": "URL_CREDENTIALS",
}


def _render(template: str, filler: _Filler) -> tuple[str, list[tuple[int, int, str]]]:
    out: list[str] = []
    spans: list[tuple[int, int, str]] = []
    pos = length = 0
    for m in SLOT.finditer(template):
        literal = template[pos : m.start()]
        out.append(literal)
        length += len(literal)
        kind = m.group(1)
        value = getattr(filler, kind)()
        if kind in PII_SLOTS:
            spans.append((length, length + len(value), PII_SLOTS[kind]))
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def generate(split: str, n: int, seed: int = 15) -> list[Record]:
    """`n` records drawn only from the `split` ("dev" or "test") half of vocabularies and templates."""
    if split not in ("dev", "test"):
        raise ValueError(f"unknown split {split!r}: use dev or test")
    r = random.Random(f"{seed}-{split}")
    filler = _Filler(r, split)
    domains = [d for d, w in DOMAIN_WEIGHTS.items() for _ in range(w)]
    records = []
    for i in range(n):
        domain = domains[i % len(domains)]
        template = r.choice(_half(templates.DOMAINS[domain], split))
        text, spans = _render(template, filler)
        records.append(Record(f"{split}-{i:05d}", domain, text, spans))
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()
    for rec in generate(args.split, args.n, args.seed):
        sys.stdout.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
