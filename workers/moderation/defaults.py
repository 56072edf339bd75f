"""The default rule set: a starting point that every new project gets, in Chinese and English.

Deliberately small and unambiguous: phrases rather than single words that also have innocent
uses. "block" only where the content is unacceptable whatever the context (sexual content
involving minors, instructions for weapons of mass harm); everything else is "flag", for a
reviewer to look at. The "pii" rules find the shapes the dataset recognizers look for
(workers/data/pii_recognizers.py), without their checksums: a flag, not a verdict.
"""

from __future__ import annotations

from workers.moderation.rules import Rule

__all__ = ["default_rules"]

K, R = "keyword", "regex"
B, F = "block", "flag"

# (kind, pattern, category, severity)
_DEFAULTS: tuple[tuple[str, str, str, str], ...] = (
    # harassment
    (K, "you are worthless", "harassment", F),
    (K, "nobody will ever love you", "harassment", F),
    (
        R,
        r"\byou(?: are|'re) (?:a )?(?:pathetic|disgusting) (?:loser|idiot|moron)\b",
        "harassment",
        F,
    ),
    (K, "你就是个废物", "harassment", F),
    (K, "脑残", "harassment", F),
    (K, "蠢货", "harassment", F),
    # harassment/threatening
    (K, "i know where you live", "harassment/threatening", F),
    (
        R,
        r"\bi(?:'ll| will| am going to) (?:hunt you down|make you pay|hurt you)\b",
        "harassment/threatening",
        F,
    ),
    (K, "我知道你住在哪", "harassment/threatening", F),
    (K, "弄死你", "harassment/threatening", F),
    (K, "你给我等着", "harassment/threatening", F),
    # hate
    (K, "inferior race", "hate", F),
    (K, "subhuman vermin", "hate", F),
    (K, "go back to your own country", "hate", F),
    (K, "劣等民族", "hate", F),
    (K, "低等人种", "hate", F),
    # hate/threatening
    (K, "ethnic cleansing", "hate/threatening", F),
    (
        R,
        r"\b(?:exterminate|wipe out) (?:them|all of them|every one of them)\b",
        "hate/threatening",
        F,
    ),
    (K, "种族清洗", "hate/threatening", F),
    (K, "把他们全部杀光", "hate/threatening", F),
    # self-harm
    (K, "self-harm", "self-harm", F),
    (R, r"\b(?:cut|cutting|hurt|hurting|burn|burning) myself\b", "self-harm", F),
    (K, "自残", "self-harm", F),
    (K, "割腕", "self-harm", F),
    # self-harm/intent
    (R, r"\bi (?:want|am going|plan) to (?:kill myself|end my life|die)\b", "self-harm/intent", F),
    (K, "我想自杀", "self-harm/intent", F),
    (K, "我不想活了", "self-harm/intent", F),
    # self-harm/instructions
    (R, r"\b(?:how|best way) to (?:kill yourself|commit suicide)\b", "self-harm/instructions", F),
    (K, "painless way to die", "self-harm/instructions", F),
    (K, "自杀方法", "self-harm/instructions", F),
    (K, "怎么自杀", "self-harm/instructions", F),
    # sexual
    (K, "explicit sex scene", "sexual", F),
    (R, r"\b(?:porn|pornographic|pornography)\b", "sexual", F),
    (K, "nude photos", "sexual", F),
    (K, "色情", "sexual", F),
    (K, "裸照", "sexual", F),
    # sexual/minors
    (R, r"\bchild (?:porn|pornography|sexual abuse material)\b", "sexual/minors", B),
    (K, "csam", "sexual/minors", B),
    (
        R,
        r"\b(?:sex|sexual|nude|naked) (?:with|photos? of|images? of) (?:a )?(?:minor|child|children)s?\b",
        "sexual/minors",
        B,
    ),
    (K, "儿童色情", "sexual/minors", B),
    (K, "未成年人色情", "sexual/minors", B),
    (K, "幼女色情", "sexual/minors", B),
    # violence
    (R, r"\bbeat (?:him|her|them) to death\b", "violence", F),
    (K, "shoot them all", "violence", F),
    (K, "砍死他", "violence", F),
    (K, "打死他", "violence", F),
    # violence/graphic
    (K, "dismembered body", "violence/graphic", F),
    (R, r"\b(?:decapitated|disemboweled|disembowelled)\b", "violence/graphic", F),
    (K, "血肉模糊", "violence/graphic", F),
    (K, "肢解", "violence/graphic", F),
    # illicit
    (R, r"\b(?:buy|sell|cook|make) (?:cocaine|heroin|meth|methamphetamine)\b", "illicit", F),
    (K, "counterfeit money", "illicit", F),
    (K, "launder money", "illicit", F),
    (K, "贩毒", "illicit", F),
    (K, "洗钱", "illicit", F),
    (K, "代开发票", "illicit", F),
    # illicit/violent: weapons of mass harm are blocked, other weapons flagged
    (R, r"\bhow to (?:make|build) (?:a )?(?:pipe )?bomb\b", "illicit/violent", B),
    (
        R,
        r"\b(?:synthesi[sz]e|make|produce) (?:sarin|vx|ricin|anthrax|a nerve agent)\b",
        "illicit/violent",
        B,
    ),
    (K, "weaponize anthrax", "illicit/violent", B),
    (K, "制造炸弹", "illicit/violent", B),
    (K, "制作炸药", "illicit/violent", B),
    (K, "合成沙林", "illicit/violent", B),
    (R, r"\b(?:3d[- ]printed|untraceable) (?:gun|firearm)s?\b", "illicit/violent", F),
    (K, "自制枪支", "illicit/violent", F),
    # pii: the shapes of workers/data/pii_recognizers.py, as flags
    (
        R,
        r"\b[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]\b",
        "pii",
        F,
    ),
    (R, r"(?:\+86[- ]?|\b)1[3-9]\d[- ]?\d{4}[- ]?\d{4}\b", "pii", F),
    (R, r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", "pii", F),
    (R, r"\b(?:\d[ -]?){15,18}\d\b", "pii", F),
)


def default_rules() -> list[Rule]:
    """The default rules, ids "default:1", "default:2", ... in table order."""
    return [
        Rule(id=f"default:{n}", kind=kind, pattern=pattern, category=category, severity=severity)
        for n, (kind, pattern, category, severity) in enumerate(_DEFAULTS, start=1)
    ]
