"""Person-name patterns and validators for the PERSON recognizers of `pii_recognizers`.

A name is only reported where something says it is one, because a bare "高明" or "Grace Period"
is as often a word as a name:

* a label or salutation before it (持卡人, 收件人, 尊敬的, 家属, "Name:", "Attn:", "Dear") - the
  name is a surname from the tables (about 400 single and 80 compound ones) and one or two
  characters common in given names, or capitalized English / pinyin words;
* a title after it (先生, 女士, 医生, 老师, 经理 ...; "李医生" reports 李: the name is the PII, the
  title stays), or before it (Mr., Dr., Prof.);
* for English and pinyin names without a label, the tables themselves: a known given name followed
  by a capitalized family name ("George B. Williams"), or a pinyin surname next to a word that
  parses as pinyin syllables ("Zhang Wei", "Wei Zhang", "ZHANG Wei").

Names without any of that are found where their shape or their place says so (`MORE_PERSON_FORMS`):

* Chinese names in running text, lists, chats and table cells: a surname and one or two given-name
  characters (or 小王, 老李, 阿杰) that the jieba segmenter cuts out as a word of their own, that
  are neither a common word of its dictionary nor a place or brand (`ZH_NOT_NAMES`, a place word
  after it), and, for two characters, that stand next to punctuation or a verb; 买买提·艾力;
* Latin-script forms: "Margaret Anne Hughes", "J. R. Smith", "Vaswani A.," (citations),
  "Zhou, Jennifer", "WANG/FANG MS", "Nguyễn Thị Hương", "Kim Ji-woo", "Lucy陈", "阿May".

And where a form, a chat or a list places them (the second pass of issue 15: the general shapes,
not a list of examples):

* after any label that names a role, "<role>：" with a role ending in 人/员/者/师/生/手/主/属/长
  (收款人, 核对人, 派件员, 术者) or one of the form's own (一助, 麻醉, 审核, 甲方, 致): whatever stands
  there up to punctuation, when it reads as a name (any surname, 贝贝, 阿卜杜拉, 柳 before 会计, a
  Latin name) and not as words, a role or an organization (jieba decides "通过", "财务部");
  kinship and naming labels need no colon (父亲危志强, 真名李梓萱, 出差人尹天仇、);
* a chat speaker at a line's start ("老张：", "Kevin:"), a name that is all the Chinese between
  punctuation (a table cell, "1. 郭敬明 …"), an item of a 、-list, a name after a weekday in a
  roster, before "（笔名）"/"（化名）", a reduplicated child's name beside a kinship word (晨晨爸爸);
* Latin names with diacritics and particles (Jörg Müller, Ahmad bin Ismail), after more labels
  (Consignee:, Translator:, reviewed by, with, cc'ing), @mentions, a given name glued to Chinese
  ("Tony说"), a sign-off line, "Hinton 等人", capitals on a passport page ("OUYANG XIUYUAN").

Each validator here only *rejects* what its pattern found (it never needs text its recognizer's
triggers do not cover), which keeps the Hyperscan and `re` engines in agreement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

from workers.data.pii_data.names import (
    EN_BRAND_NAMES,
    EN_FAMILY_NAMES,
    EN_FAMILY_NAMES_EXTRA,
    EN_FAMILY_NAMES_MORE,
    EN_GIVEN_NAMES,
    EN_GIVEN_NAMES_EXTRA,
    EN_GIVEN_NAMES_MORE,
    EN_NOT_FAMILY,
    EN_NOT_NAME,
    KO_SURNAMES,
    PINYIN_ENGLISH_WORDS,
    PINYIN_NOT_NAMES,
    PINYIN_SURNAMES,
    PINYIN_SYLLABLES,
    VI_SURNAMES,
    ZH_COMPOUND_SURNAMES,
    ZH_GIVEN_CHARS,
    ZH_GIVEN_CHARS_EXTRA,
    ZH_GIVEN_CHARS_MORE,
    ZH_NOT_NAMES,
    ZH_NOT_NAMES_MORE,
    ZH_RARE_SURNAMES,
    ZH_ROLE_WORDS,
    ZH_SINGLE_SURNAMES,
)


def _longest_first(word: str) -> tuple[int, str]:
    """Sort key of alternatives: longest first (a shorter one must not win), then alphabetical, so
    that a pattern's text is the same in every process (sets iterate in a per-process order, and
    the compiled Hyperscan database is cached under a hash of that text)."""
    return -len(word), word


# The census lists decide unlabeled "Given Family" pairs on their own; the longer lists need more
# (a family name from the tables too, a greeting, a sign-off).
_EN_GIVEN_ALL = EN_GIVEN_NAMES | EN_GIVEN_NAMES_MORE | EN_GIVEN_NAMES_EXTRA
_EN_FAMILY_ALL = EN_FAMILY_NAMES | EN_FAMILY_NAMES_MORE | EN_FAMILY_NAMES_EXTRA
# Given names that are rarely anything else ("Hans", "Fatima"; not "Grace", "Will", "May").
_EN_GIVEN_STRONG = EN_GIVEN_NAMES | EN_GIVEN_NAMES_EXTRA
HAN = "一-鿿"
_B = r"(?:\\[bfnrt]|\b)"  # a word boundary, or a JSON escape standing for one (raw-byte triggers)
_ESCAPED_NEWLINE = r"\\[nr]"  # "\n" in raw JSON bytes: a backslash and an n

# Surname characters that are more often function words or parts of common words; never a surname
# here (a compound surname that starts with one is still found).
_NOT_SURNAME = set(
    "于和向时常将也之以从把被到都就其所仍能第那后相应全通别利充广经解干空东国家须满宿双明支计养居终步"
    "连习容古慎越禄隆师巩强路危麻松谷牧山能苍班"
)
# Characters that, right before a name, end a word that introduces it (麻烦, 咨询, 感谢, 联系, 的).
# So do organization suffixes: 人事部王经理, 公司李总监, 银行张经理.
_NAME_LEFT = set(
    "烦询谢系找请问给叫和与跟由让被的是位及或对知诉托告陪同见约请拜访向部科处组队院司店行局校"
)
# Surnames that, right after another Chinese character, too often end a word ("语文老师", "班主任
# 老师", "历史老师"): before a title they need a non-Chinese character (or a label) on the left.
_WEAK_BEFORE_TITLE = set("文任史乐管安成金石白方高万钱江林黄马田车洪宁")
# Words whose last character is a surname, seen right before a title ("谢谢先生", "主任医师").
_WORDS_ENDING_IN_SURNAME = frozenset(
    "谢谢 感谢 多谢 致谢 道谢 答谢 鸣谢 主任 主管 历史 音乐 声乐 语文 中文 英文 日文 法文 人文 天文 作文 课文 "
    "全科 大堂".split()
)
_SINGLE = "".join(sorted(set(ZH_SINGLE_SURNAMES + ZH_RARE_SURNAMES) - _NOT_SURNAME))
# Every surname character, the ones that are more often words too: where a label has placed a name.
_ANY_SURNAME = frozenset(ZH_SINGLE_SURNAMES + ZH_RARE_SURNAMES)
_COMPOUND = tuple(dict.fromkeys(ZH_COMPOUND_SURNAMES))
_SINGLE_SET = frozenset(_SINGLE)
_GIVEN = (
    "[" + "".join(sorted(set(ZH_GIVEN_CHARS + ZH_GIVEN_CHARS_MORE + ZH_GIVEN_CHARS_EXTRA))) + "]"
)
ZH_SURNAME = f"(?:{'|'.join(_COMPOUND)}|[{_SINGLE}])"
ZH_NAME = f"{ZH_SURNAME}{_GIVEN}{{1,2}}"
# After a label: any surname (于, 常, 危 too: the label says a name follows), or a familiar form
# ("快递员小邓", "派件员 老周").
_ANY_SURNAME_CLASS = "".join(sorted(_ANY_SURNAME))
ZH_SURNAME_ANY = f"(?:{'|'.join(_COMPOUND)}|[{_ANY_SURNAME_CLASS}])"
ZH_LABELED_NAME = f"(?:{ZH_SURNAME_ANY}{_GIVEN}{{1,2}}|[小老][{_SINGLE}])"
_SURNAME_START = ZH_SURNAME_ANY

ZH_LABELS = (
    "患者 病人 病患 患儿 就诊人 受检人 体检人 姓名 名字 联系人 紧急联系人 持卡人 户名 开户名 账户名 "
    "开户人 收件人 收货人 寄件人 发件人 收款人 付款人 汇款人 尊敬的 亲爱的 家属 投保人 被保险人 被保人 "
    "受益人 申请人 经办人 负责人 处理人 业务员 客户经理 客户 用户 会员 员工 职工 学员 乘客 旅客 租客 "
    "房东 业主 借款人 担保人 法定代表人 代理人 委托人 签名 签字 本人 我叫 我是 医师 主治医师 主治医生 "
    "接诊医生 责任医生 医生： 医生: 护士 快递员 送货员 配送员 骑手 司机 教练 转交 兹证明 感谢 谢谢 您好 "
    "你好 女儿 儿子 丈夫 妻子 父亲 母亲 爱人 配偶 同事 介绍人 推荐人 审核人 审批人 复核人 制单人 "
    "填表人 报告人 记录人 对接人 跟进人 原告 被告 原告人 被告人 上诉人 被上诉人 第三人 当事人 "
    "证人 受害人 被害人 嫌疑人 犯罪嫌疑人 报警人 举报人 投诉人 来访人 签收人 取件人 提货人 发货人 "
    "送检人 监护人 户主 班主任 辅导员 导师 讲师 主讲人 主持人 记者 通讯员 承办人 办案人 "
    "收： 收: 寄： 寄: 技术 Name Customer Patient Contact Attn Dear Cardholder "
    "Recipient Employee Insured Policyholder Beneficiary"
).split()
ZH_BEFORE = f"(?:{'|'.join(sorted(set(ZH_LABELS), key=_longest_first))})[:：，,]?[ 　]{{0,2}}"
ZH_TITLES = (
    "先生 女士 小姐 医生 医师 大夫 老师 经理 同志 主任 教授 律师 护士 师傅 院长 校长 总监 处长 科长 "
    "局长 部长 书记 阿姨 同学 工程师 博士 主管 专员 警官 队长 组长 您好 你好 会计 出纳 爸爸 妈妈 "
    "某某 总 姐 哥 某"
).split()
# Titles of one character: "王总", "李姐", "刘某"; never where they start a word ("陈总结", "姐妹").
_SHORT_TITLES = frozenset(t for t in ZH_TITLES if len(t) == 1)
ZH_AFTER = f"(?:{'|'.join(sorted(ZH_TITLES, key=_longest_first))})"
_TITLES_TUPLE = tuple(ZH_TITLES)
_GIVEN_SET_TITLED = frozenset(ZH_GIVEN_CHARS + ZH_GIVEN_CHARS_MORE + ZH_GIVEN_CHARS_EXTRA)
_LONG_TITLES = tuple(t for t in ZH_TITLES if len(t) > 1)
_LONG_TITLE_FIRST = frozenset(t[0] for t in _LONG_TITLES)
# A title right after a surname: the name is the surname and zero to two given-name characters.
# A given-name character that starts a title is the title's ("邱小姐" is 邱 and 小姐, not 邱小 and 姐).
_TITLE_STARTS = "|".join(t for t in ZH_TITLES if len(t) > 1 and t[0] in _GIVEN_SET_TITLED)
ZH_TITLED = f"(?P<v>{ZH_SURNAME}(?:(?!{_TITLE_STARTS}){_GIVEN}){{0,2}}){ZH_AFTER}"
# (Any Chinese character for the given name: a superset that compiles in a third of the time.)
ZH_TITLED_TRIGGER = f"{ZH_SURNAME}[{HAN}]{{0,2}}{ZH_AFTER}"
CONTEXT = 8  # how far before a name its validators look (a label before a titled name)
_WEEKDAY = re.compile("(?:周|星期|礼拜)[一二三四五六七日天末]")
_LABEL_BEFORE = re.compile(
    f"(?:{'|'.join(sorted(set(ZH_LABELS), key=_longest_first))})[:：，,]?[ 　]{{0,2}}$"
)
_HAN_CHAR = re.compile(f"[{HAN}]")
_FIRM = ("律师事务所", "律所", "会计师事务所")


def zh_name_ok(value: str, text: str, start: int) -> bool:
    """A labeled Chinese name: never a weekday ("周一至周五"), never cut into a title ("感谢钟小姐"
    is 钟, found before its title); with a surname that is more often a word (于, 常), never a word
    ("患者于今日")."""
    if any(text.startswith(_TITLES_TUPLE, start + k) for k in range(1, len(value))):
        return False
    if _WEEKDAY.match(value):
        return False
    if value[0] in _SINGLE_SET or value[:2] in _COMPOUND_SET:
        return value not in _ALL_NOT_NAMES or value[0] in "小老"
    return not _zh_words_only(value) and not _zh_words_only(value[:2])


def zh_titled_ok(value: str, text: str, start: int) -> bool:
    """A name before a title, unless its surname is the end of a word ("语文老师", "主任医师")."""
    if _WEEKDAY.match(value):
        return False
    end = start + len(value)
    if _title_inside(value, text, start):
        return False  # "钟小姐": 钟 and a title, not 钟小 and 姐
    if text[end] in _SHORT_TITLES and not text.startswith(_LONG_TITLES, end):
        _, freq, tags, _ = _segmenter()
        word = text[end : end + 2]  # "总结", "姐妹", "哥们": the title starts a word
        if len(word) == 2 and _is_han(word[1]) and freq.get(word, 0) >= _RARE_FREQ:
            return False
        if _common_word(text[start : end + 1], freq, tags):  # "帅哥", "大姐"
            return False
    if start and text[start - 1 : start + 1] in _WORDS_ENDING_IN_SURNAME:
        return False
    if text.startswith(_FIRM, start + len(value)):  # 金杜律师事务所
        return False
    if not start or not _HAN_CHAR.match(text, start - 1) or text[start - 1] in _NAME_LEFT:
        return True
    if _LABEL_BEFORE.search(text, max(0, start - CONTEXT), start):  # "快递员史师傅"
        return True
    # After another Chinese character a weak surname alone is the end of a word ("语文老师").
    return not (len(value) == 1 and value[0] in _WEAK_BEFORE_TITLE)


# --- English and pinyin ------------------------------------------------------------------------
# Latin letters with diacritics (Müller, Ólafur, Łukasz) count as letters of a name.
_UP = "A-ZÀ-ÖØ-ÞĀ-Ž"
_LO = "a-zß-öø-ÿĀ-ž"
_LATIN = "À-ÖØ-öø-ž"
_EN_TAIL = (
    f"(?:[{_LO}]{{1,20}}(?:[A-Z][{_LO}]{{1,20}})?|['’][A-Z][{_LO}]{{1,20}})"  # McDonald, O'Brien
)
EN_WORD = f"[{_UP}]{_EN_TAIL}(?:-[{_UP}]{_EN_TAIL})?"
# Particles inside a name: "Ahmad bin Ismail", "Ludwig van Beethoven", "Siobhán Ní Bhriain".
_PARTICLE = "(?:bin|binti|ibn|van|von|de|da|di|del|della|dos|das|der|den|du|la|le|al|el)[ ]"
EN_UPPER = "[A-Z]{2,12}"  # a family name in capitals: "ZHANG Wei"
EN_NAME = f"(?:{EN_WORD}|{EN_UPPER})(?:[ ](?:[A-Z]\\.[ ]|{_PARTICLE})?{EN_WORD}){{0,2}}"
EN_TITLE = r"(?:Mrs|Mr|Ms|Miss|Mx|Dr|Prof)\.?[ ]{1,2}"
_EN_STRICT_TITLE = re.compile(r"(?:Dr|Prof)\.?[ ]{1,2}$")
_WORD_SPLIT = re.compile(
    r"[ ]+(?:[A-Z]\.[ ]|(?:bin|binti|ibn|van|von|de|da|di|del|della|dos|das|der|den|du|la|le|al|el)[ ])?"
)
# Labels after which capitalized words are a name unless they are a common label word ("Dear
# Customer"); the weak ones ("Hi", "From:") also need a word from the name tables.
EN_STRONG_LABELS = (
    "Name:|Full name:|Name：|Customer name:|Customer|Patient:|Patient name:|Attn:|Attn|Attention:|"
    "Dear|Cardholder:|Card holder:|Account holder:|Account name:|Policyholder:|Policy holder:|"
    "Insured:|Beneficiary:|Employee:|Applicant:|Recipient:|Ship to:|Deliver to:|Bill to:|"
    "Contact person:|Signed:|Signature:|Referred by|Passenger:|Guest:|Tenant:|Landlord:|"
    "Surname:|Given name:|Given names:|First name:|Last name:|Family name:|Consignee:|Shipper:|"
    "Sender:|Receiver:|Translator:|Interpreter:|Prepared by|prepared by|Reviewed by|reviewed by|"
    "Approved by|Checked by|checked by|Issued by|issued by|Submitted by|submitted by|"
    "Requested by|requested by|Assignee:|Reporter:|Witness:|Plaintiff:|Defendant:|Claimant:|"
    "Driver:|Courier:|Name on card|name on card|cardholder|Cardholder|Account holder|"
    "Emergency contact:|Next of kin:|Guardian:|Spouse:|致：|致:"
).split("|")
EN_WEAK_LABELS = (
    "Hi|Hello|Hey|Thanks,|Thank you,|Regards,|regards,|wishes,|Best,|Sincerely,|sincerely,|"
    "Cheers,|From:|To:|Cc:|CC:|"
    "Contact:|Manager:|assigned to|this is|This is|my name is|My name is|I am|I'm|signed by|"
    "approved by|written by|reported by|Agent:|Owner:|Reviewer:|Author:|"
    "with|from|ping|cc'ing|cc:|by|Sorry|sorry|Thanks|thanks|Officer|officer|colleague|employee|"
    "Welcome|welcome|Congrats|congrats|— |– |-- |ask|asked|told|call|email|meet|met|"
    "Host:|Speaker:|Presenter:|Interviewer:|Candidate:|Student:|Teacher:|Doctor:|Nurse:|"
    "Engineer:|Lawyer:|Attorney:|Judge:|Requester:|Approver:|Rider:|Buyer:|Seller:|name:|NAME:"
).split("|")


def _labels(labels: list[str]) -> str:
    return "|".join(re.escape(x) for x in sorted(set(labels), key=_longest_first))


EN_LABEL_GAP = r"[ ]{0,2}\n?[ ]{0,2}"
EN_AFTER_STRONG = f"(?:{_labels(EN_STRONG_LABELS)}){EN_LABEL_GAP}(?P<v>{EN_NAME})(?![A-Za-z])"
EN_AFTER_WEAK = (  # a weak label is a whole word: "by", not the end of "nearby"
    f"(?<![A-Za-z])(?:{_labels(EN_WEAK_LABELS)}){EN_LABEL_GAP}(?P<v>{EN_NAME})(?![A-Za-z])"
)
EN_LABEL_REACH = max(len(x) for x in EN_STRONG_LABELS + EN_WEAK_LABELS) + len("  \n  A")
# A label and the capital a name starts with (a label alone, "with", "by", is in most English text).
_GAP_TRIGGER = f"[ ]{{0,2}}(?:{_ESCAPED_NEWLINE}|\n)?[ ]{{0,2}}[{_UP}]"
EN_LABEL_TRIGGERS_STRONG = (f"(?:{_labels(EN_STRONG_LABELS)}){_GAP_TRIGGER}",)
EN_LABEL_TRIGGERS_WEAK = (f"(?:{_labels(EN_WEAK_LABELS)}){_GAP_TRIGGER}",)
EN_LABEL_GATE_STRONG = "|".join(re.escape(x) for x in EN_STRONG_LABELS)
EN_LABEL_GATE_WEAK = "|".join(re.escape(x) for x in EN_WEAK_LABELS)

# A known given name, an optional initial, then a capitalized family name.
_GIVEN_ALT = "|".join(sorted(_EN_GIVEN_ALL, key=_longest_first))
EN_FREE = (
    rf"(?P<v>[{_UP}](?<![0-9A-Za-z_{_LATIN}].)[{_LO}]{{1,20}}(?:-[{_UP}][{_LO}]{{1,20}})?"
    rf"(?:[ ][A-Z]\.)?[ ](?:{_PARTICLE})?{EN_WORD}(?:[ ]{EN_WORD})?)(?![0-9A-Za-z_{_LATIN}])"
)
EN_FREE_REACH = max(len(x) for x in _EN_GIVEN_ALL) + len(" B. W")
EN_FREE_TRIGGER = rf"(?:{_GIVEN_ALT})[ ](?:[A-Z]\.[ ]|{_PARTICLE})?[{_UP}]"

_PY_SUR_ALT = "|".join(
    sorted({s for s in PINYIN_SURNAMES} | {s.upper() for s in PINYIN_SURNAMES}, key=_longest_first)
)
PINYIN_PAIR = (
    r"(?P<v>[A-Z](?<![0-9A-Za-z_].)(?:[a-z]{1,11}|[A-Z]{1,11})[ ](?:[A-Z][a-z]{1,11}|[A-Z]{2,12}))"
    r"(?![0-9A-Za-z_])"
)
PINYIN_TRIGGERS = (
    rf"{_B}(?:{_PY_SUR_ALT})[ ][A-Z][A-Za-z]",  # surname first: "Zhang Wei", "ZHANG Wei", "LIU YIFAN"
    rf"{_B}[A-Z][a-z]{{1,11}}[ ](?:{'|'.join(sorted(PINYIN_SURNAMES))}){_B}",  # "Wei Zhang"
)


def _is_name_word(word: str) -> bool:
    return word in _EN_GIVEN_ALL or word in _EN_FAMILY_ALL or word.title() in PINYIN_SURNAMES


def _structural_family(word: str) -> bool:
    return word.startswith(("Mc", "Mac", "O'", "O’")) or "-" in word


def _brand(value: str, text: str, start: int) -> bool:
    """ "Jack Daniel's", "Morgan Stanley": a brand named after a person; "Abraham Lincoln
    Memorial" is caught by its last word."""
    return value in EN_BRAND_NAMES


_NEXT_WORD = re.compile(r"[ ]([A-Z][a-z]+)")


def _before_place_word(value: str, text: str, start: int) -> bool:
    """ "Abraham Lincoln Memorial", "Nelson Mandela Foundation": the name of a place or a body."""
    m = _NEXT_WORD.match(text, start + len(value))
    return m is not None and m.group(1) in EN_NOT_FAMILY


def en_titled_ok(value: str, text: str, start: int) -> bool:
    """After Dr./Prof. one word must look like a family name ("Dr Pepper" is a drink)."""
    words = _WORD_SPLIT.split(value)
    if words[0] in EN_NOT_NAME or words[-1] in EN_NOT_FAMILY:
        return False  # "Dr Pepper Snapple Group"
    if len(words) == 1 and _EN_STRICT_TITLE.search(text, max(0, start - 8), start):
        return _is_name_word(value) or _structural_family(value) or pinyin_word(value)
    return True


def en_strong_label_ok(value: str, text: str, start: int) -> bool:
    words = _WORD_SPLIT.split(value)
    if _brand(value, text, start):
        return False
    if len(words) == 2 and words[0] in _EN_GIVEN_STRONG:
        return True  # "Attn: Jessica Park": a given name makes "Park" a family name
    return words[0] not in EN_NOT_NAME and not any(w in EN_NOT_FAMILY for w in words[1:])


def en_weak_label_ok(value: str, text: str, start: int) -> bool:
    words = _WORD_SPLIT.split(value)
    if words[0] in EN_NOT_NAME or any(w in EN_NOT_FAMILY for w in words[1:]):
        return False
    if _before_place_word(value, text, start) or _brand(value, text, start):
        return False  # "Lincoln Memorial", "by Morgan Stanley"
    if text[max(0, start - 3) : start].rstrip(" ").endswith(("—", "–", "--")):
        return words[0] in _EN_GIVEN_ALL  # a sign-off dash: "— Declan O'Connell", not "— Ward 7B"
    # "Agent: Sorry Pan Chen": the name must start right after the greeting.
    return _is_name_word(words[0]) or pinyin_name_ok(value, text, start, labeled=True)


def en_free_ok(value: str, text: str, start: int) -> bool:
    words = _WORD_SPLIT.split(value)
    if any(w in EN_NOT_FAMILY for w in words[1:]) or _brand(value, text, start):
        return False
    if _before_place_word(value, text, start):
        return False
    return words[0] in _EN_GIVEN_STRONG or (
        words[0] in _EN_GIVEN_ALL and words[-1] in _EN_FAMILY_ALL
    )


@lru_cache(maxsize=4096)
def pinyin_word(word: str) -> bool:
    """Is `word` one to three pinyin syllables run together ("Xiaoming", "Wei")?"""
    w = word.lower()
    return _syllables(w, 3)


def _syllables(w: str, left: int) -> bool:
    if not w:
        return True
    if not left:
        return False
    for n in range(min(6, len(w)), 0, -1):
        if w[:n] in PINYIN_SYLLABLES and _syllables(w[n:], left - 1):
            return True
    return False


def pinyin_name_ok(value: str, text: str, start: int, *, labeled: bool = False) -> bool:
    """Surname and pinyin given name, in either order: "Zhang Wei", "Wei Zhang", "ZHANG Wei".

    Unlabeled, a given name that is also an English word ("Long") does not start a name.
    """
    words = value.split(" ")
    if len(words) != 2 or value in PINYIN_NOT_NAMES:
        return False
    first, last = words
    if last.isupper():  # "LIU YIFAN", "OUYANG XIUYUAN": both in capitals
        return (
            first.isupper()
            and value.title() not in PINYIN_NOT_NAMES
            and not (first.title() in PINYIN_ENGLISH_WORDS and last.title() in PINYIN_ENGLISH_WORDS)
            and first.title() in PINYIN_SURNAMES
            and pinyin_word(last)
        )
    if first in PINYIN_ENGLISH_WORDS and last in PINYIN_ENGLISH_WORDS:
        return False  # "He Can", "Long Song"
    if first.title() in PINYIN_SURNAMES and (first.istitle() or first.isupper()):
        if pinyin_word(last) and last not in EN_NOT_FAMILY:
            return True
    return (
        first.istitle()
        and last in PINYIN_SURNAMES
        and (labeled or first not in PINYIN_ENGLISH_WORDS)
        and pinyin_word(first)
    )


# --- Chinese names without a label -------------------------------------------------------------
# A surname and one or two given-name characters (or a familiar form: 小王, 老李, 阿杰) anywhere in
# Chinese text. The pattern proposes every such run; the validator keeps the ones that a word
# segmenter (jieba, its dictionary and HMM for unknown words) cuts out as a word of their own, that
# are not a common word or a place/brand from the stop list, and that no title or place word
# follows. Two recognizers, one per length, because a validator cannot shorten a match: "王芳说"
# is rejected as three characters and found as two.
_FAMILIAR = "[小老大阿]"


def _trigger(pattern: str) -> str:
    """A pattern without look-arounds as a Hyperscan trigger: its value group made plain."""
    return pattern.replace("(?P<v>", "(?:")


ZH_FREE_LONG = f"(?P<v>{ZH_SURNAME}{_GIVEN}{{2}})"
# (小 and a given-name character is a child's or a nickname: 小明, 小雨.)
ZH_FREE_SHORT = f"(?P<v>{ZH_SURNAME}{_GIVEN}|{_FAMILIAR}[{_SINGLE}]|[阿小]{_GIVEN})"
ZH_FREE_GATE = f"[{_SINGLE}{''.join(sorted({c[0] for c in _COMPOUND}))}阿小]"
# Hyperscan's pattern length limit is near: a given-name class much larger than the tables' (about
# 700 characters) makes this trigger fail to compile (and the tests fail).
ZH_FREE_LONG_TRIGGER = _trigger(ZH_FREE_LONG)
# The segmenter sees at most this many characters either side of a candidate (within CONTEXT, the
# reach `pii_recognizers.MAX_CONTEXT` counts on).
FREE_CONTEXT = CONTEXT

# A given name's last characters that make it a title, a kinship word, a role or a number (王总,
# 李姐, 张工, 刘某, 申请人, 唐宋八).
_TITLE_TAIL = set("总工姐哥叔伯姨爷奶婆嫂妈爸某氏董局处科队所先女医师家人八九十百千万亿")
# Words right after a name that make it part of a place, an organization or a brand.
_PLACE_AFTER = tuple(
    (
        "路 街 道 巷 弄 区 县 市 省 州 镇 乡 村 庄 湾 桥 山 河 湖 江 岛 港 站 门 楼 园 寺 庙 "
        "律师事务所 律所 大学 学院 中学 小学 公司 集团 医院 银行 酒店 大厦 广场 公园 纪念 事务所 研究 中心 基金 "
        "电子 网络 实业 贸易 物流 餐饮 超市 商城 药业 制药 地产 置业 汽车 数码 教育 培训 "
        "牌 品牌 体育 股份 科技 文化 传媒 电器 专卖 旗舰 体 式 定理 效应 理论 家族 王朝 杯 奖 语 族"
    ).split()
)
_PLACE_AFTER_FIRST = frozenset(w[0] for w in _PLACE_AFTER)
# A last character that makes the word a place (高新区, 金桥, 中山路).
_PLACE_TAIL = set("路街道巷弄区县市省州镇乡村庄湾桥山河湖岛港站门楼园寺庙厂馆院")
_NR = ("nr", "nrfg", "nrt")


@lru_cache(maxsize=1)
def _segmenter() -> tuple[Any, dict[str, int], dict[str, str], frozenset[str]]:
    """The segmenter, jieba's word frequencies and part-of-speech tags, and the stop list.

    The segmenter is rjieba (jieba-rs: jieba's dictionary and HMM in Rust). It cuts as jieba does
    (the tests compare the two on the evaluation set's Chinese runs), 2 us a window instead of 23:
    name-dense documents scan about a third faster; on other text the cuts were a small share.
    The frequencies and tags are read from jieba's own `dict.txt`, as jieba reads them, without
    building jieba's prefix dictionary.
    Loaded on the first candidate (about 0.5 s and 60 MB), so that a process that never scans
    Chinese text never pays for it.
    """
    import rjieba  # noqa: PLC0415

    freq, tags = _jieba_dictionary()
    return rjieba.Jieba(), freq, tags, ZH_NOT_NAMES | ZH_NOT_NAMES_MORE


def _jieba_dictionary() -> tuple[dict[str, int], dict[str, str]]:
    """jieba's `dict.txt` ("word frequency tag" per line) as word -> frequency, word -> tag."""
    from importlib.resources import files  # noqa: PLC0415

    text = files("jieba").joinpath("dict.txt").read_text(encoding="utf-8").strip()
    fields = text.replace("\n", " ").split(" ")  # no word holds a space: word, count, tag, ...
    words = fields[0::3]
    freq = dict(zip(words, map(int, fields[1::3]), strict=True))
    tags = dict(zip(words, fields[2::3], strict=True))
    return freq, tags


def _is_han(ch: str) -> bool:
    return "一" <= ch <= "鿿"


@lru_cache(maxsize=65_536)
def _cuts(window: str) -> frozenset[int]:
    """Offsets in `window` where jieba ends a word."""
    tok = _segmenter()[0]
    ends, pos = set(), 0
    for word in tok.cut(window, True):
        pos += len(word)
        ends.add(pos)
    return frozenset(ends)


def _common_word(word: str, freq: dict[str, int], tags: dict[str, str]) -> bool:
    """A word of jieba's dictionary that is not a name and not a rarity (付强 3 is a verb there)."""
    return freq.get(word, 0) >= _RARE_FREQ and not tags.get(word, "x").startswith(_NR)


def zh_free_ok(value: str, text: str, start: int) -> bool:
    """A Chinese name in running text: a word of its own, neither a common word nor a place.

    The pattern allows only given-name characters; the cheap tests come first (this runs on
    every surname in Chinese text) and jieba last, on the few candidates left.
    """
    end = start + len(value)
    if value[-1] in _TITLE_TAIL or value[-1] in _PLACE_TAIL or value[1:] in ZH_TITLES:
        return False
    if _title_inside(value, text, start):
        return False  # "钟小姐" is 钟 and a title
    compound = value[:2] in _COMPOUND_SET
    familiar = len(value) == 2 and value[0] in "小老大阿"  # 小王, 老李, 阿杰
    if len(value) == 2 and not compound:
        # Two characters ("王芳", but also "索引", "高清") need a boundary around them.
        if not _short_name_placed(value, text, start, "" if familiar else value[1]):
            return False
    _, freq, tags, stop = _segmenter()
    if familiar:  # jieba counts some as rare nouns (小周 3): only a frequent word is one
        common = freq.get(value, 0) >= _FAMILIAR_FREQ and not tags.get(value, "").startswith(_NR)
        if common and value[0] in "小老" and value[1] in _SINGLE_SET:
            # 老马, 老张 are words to jieba because they are what people are called: with a cue or
            # a boundary on both sides ("由老马（…", "找老张。") they are names.
            common = not (_boundary_left(text, start) and _boundary_right(text, end))
    else:
        common = _common_word(value, freq, tags)
    if common or value in stop or text[start : end + 1] in stop:  # 小红 of 小红书
        return False
    if value[0] == "小" and text.endswith(_PERSONA_BEFORE, 0, start):
        return False  # "客服小美": a service desk's persona, not a person
    if end < len(text) and text[end] in _PLACE_AFTER_FIRST and text.startswith(_PLACE_AFTER, end):
        return False
    if len(value) > 2 and tags.get(value, "").startswith(_NR):
        return True  # a name in jieba's dictionary (刘德华, 欧阳修)
    if (
        familiar
        and value[0] in "小老"
        and value[1] in _SINGLE_SET
        and (not start or text[start - 1] not in _ANY_SURNAME)
    ):
        return True  # 小王, 老刘: jieba glues them to a verb ("找小王", "运维小|刘"); placed above
        # (not after a surname: "江小白" is a name, or a brand, of its own)
    return _cut_out(value, text, start, loose=compound or familiar)


def _short_name_placed(value: str, text: str, start: int, given: str) -> bool:
    """Is a two-character candidate where a short name stands (a boundary on its sides)?"""
    end = start + 2
    left, right = _boundary_left(text, start), _boundary_right(text, end)
    if not given:  # a familiar form
        return left or right
    if _segmenter()[1].get(value, 0) >= _COMMON_FREQ:
        # jieba tags many common two-character words as names (谢谢, 熊猫, 高峰): only where the
        # layout says so (a list item, a chat speaker, a table cell).
        return _apart(text, start - 1) and _apart(text, end)
    # A given-name character that rarely ends a common word after a surname (芳, 伟, 婷) needs a
    # boundary on one side only.
    return (left and right) or ((left or right) and given in _strong_given())


# Transliterated names with a middle dot (买买提·艾力, 阿依古丽·吐尔逊): both parts made of the
# characters Uyghur and other transliterated names are written with.
_TRANSLIT = (
    "阿艾买提力古丽依热合曼江尔木罕吾斯拉克巴图穆默德娜孜迪米汗努夏拜尼亚伊布音吐逊帕麦海沙肉则"
    "玉素甫卡哈坎什库来再西瓦比格约翰史密乔治威廉姆大卫玛露莉安杰森汤彼得保罗不都"
    "帕达莎娃扎萨奥纳瑟诺夫基耶维奇茨兹乌普列里谢洛卢罗贝特丹琳蒂菲莫塔坦法赛尤苏塞因"
)
_TRANSLIT_SET = frozenset(_TRANSLIT)
ZH_DOTTED = (
    f"(?P<v>[{_TRANSLIT}](?<![{_TRANSLIT}].)[{_TRANSLIT}]{{1,5}}·[{_TRANSLIT}]{{2,6}})"
    f"(?![{_TRANSLIT}])"
)


def zh_dotted_ok(value: str, text: str, start: int) -> bool:
    """买买提·艾力: never a place or an organization."""
    return not text.startswith(_PLACE_AFTER, start + len(value))


def _cut_out(value: str, text: str, start: int, *, loose: bool) -> bool:
    """Does jieba cut `value` out of the Chinese run around it as a word of its own?

    Loose (a compound surname, a familiar form), jieba may also cut inside it ("欧阳修|远",
    "大|刘"). A name with no Chinese character beside it (a table cell, "王|建新") needs no cut.
    """
    end = start + len(value)
    if _apart(text, start - 1) and _apart(text, end):
        return True  # the name is all the Chinese there is: a table cell, a list item
    lo = start
    while lo > start - FREE_CONTEXT and lo > 0 and _is_han(text[lo - 1]):
        lo -= 1
    hi = end
    limit = min(len(text), end + FREE_CONTEXT)
    while hi < limit and _is_han(text[hi]):
        hi += 1
    window = text[lo:hi]
    cuts = _cuts(window) | {0}
    s, e = start - lo, end - lo
    if s not in cuts or e not in cuts:
        return False
    inner = [c for c in cuts if s < c < e]
    # jieba's HMM often cuts a surname off a given name that is a word ("吕|志强", "覃|海燕").
    return loose or not inner or (len(value) == 3 and inner == [s + 1])


def _apart(text: str, i: int) -> bool:
    """Is position `i` outside the text, or a character that is not Chinese, or 、?"""
    return i < 0 or i >= len(text) or not _is_han(text[i]) or text[i] == "、"


@lru_cache(maxsize=1)
def _strong_given() -> frozenset[str]:
    """Given-name characters that end at most one common two-character word after a surname
    character in jieba's dictionary (明 ends 高明 文明 黎明 ...; 芳 ends none)."""
    _, freq, tags, _ = _segmenter()
    ends: dict[str, int] = {}
    surnames = set(_SINGLE)
    for word, count in freq.items():
        if (
            len(word) == 2
            and count >= 20
            and word[0] in surnames
            and not tags.get(word, "x").startswith("nr")
        ):
            ends[word[1]] = ends.get(word[1], 0) + 1
    return frozenset(c for c in _GIVEN_SET if ends.get(c, 0) <= 1)


_COMPOUND_SET = frozenset(_COMPOUND)
_PERSONA_BEFORE = ("客服", "助手", "机器人")
_RARE_FREQ = 10
_FAMILIAR_FREQ = 50  # 大王 n, 大方 a, 小米 n are words; 小周 (3) and 小张 are not
_COMMON_FREQ = 100  # in jieba's counts: 鲁迅 1507, 李白 374, 熊猫 286, 雷雨 195; 刘德华 37
_GIVEN_SET = frozenset(ZH_GIVEN_CHARS + ZH_GIVEN_CHARS_MORE + ZH_GIVEN_CHARS_EXTRA)
# Characters after which a word starts: particles, verbs and prepositions that take a person.
_LEFT_CUE = set("叫找给和与跟由让被的是及或对向请问谢告陪同见约拜访称把将带派交送喊帮替教经致、")
# Characters a short name is followed by: verbs, particles, conjunctions.
_RIGHT_CUE = set(
    "说的在是和与跟等已于称也都就还又来去到给打让把被讲问答笑哭做要会能可再才却正刚同回表认觉"
    "想看听找带接拿买写签发负主哦啊呀吧呢吗嘛"
    "、"
)


# The short recognizer's triggers: a two-character name has a boundary on one side at least (a
# character that is not Chinese, the text's start or end, or a cue); a compound surname alone.
# (阿 and any Chinese character: a superset that keeps the trigger within Hyperscan's length limit.)
_SHORT = f"(?:[{_SINGLE}]{_GIVEN}|{_FAMILIAR}[{_SINGLE}]|[阿小][{HAN}])"
_NOT_HAN = f"[^{HAN}]"
ZH_FREE_SHORT_TRIGGERS = (
    f"(?:^|{_NOT_HAN}|[{''.join(sorted(_LEFT_CUE))}]){_SHORT}",
    f"{_SHORT}(?:{_NOT_HAN}|[{''.join(sorted(_RIGHT_CUE))}]|$)",
    f"(?:{'|'.join(_COMPOUND)})",
)


def _boundary_left(text: str, start: int) -> bool:
    return not start or not _is_han(text[start - 1]) or text[start - 1] in _LEFT_CUE


def _boundary_right(text: str, end: int) -> bool:
    return end >= len(text) or not _is_han(text[end]) or text[end] in _RIGHT_CUE


# --- More Latin-script forms -------------------------------------------------------------------
_L = "(?<![0-9A-Za-z_].)"  # after a pattern's first character: no letter or digit before it
_R = "(?![0-9A-Za-z_])"
_CAP = "[A-Z][a-z]{1,20}"
_VI_LOWER = "a-zà-ỹđ"
_VI_UPPER = "A-ZÀ-ỸĐ"
# Words before a letter and a period that make it a label, not a citation ("Section A.").
_NOT_CITED = frozenset(
    "Section Appendix Vitamin Plan Type Class Grade Group Table Figure Fig Part Chapter Exhibit "
    "Schedule Option Model Level Phase Step Item Note Annex Room Block Building Gate Row Seat Zone "
    "Ward Floor Unit Area Hall Team Tier Size Rank Series Stage Round Box Line Platform Terminal "
    "Question Answer Article Clause Rule Form Version Sheet Page Volume Vol Book Case Point".split()
)

EN_THREE_WORDS = f"(?P<v>[A-Z]{_L}[a-z]{{1,20}}[ ]{_CAP}[ ]{EN_WORD}){_R}"
EN_INITIALS = f"(?P<v>[A-Z]{_L}\\.[ ]?(?:[A-Z]\\.[ ]?){{0,2}}{EN_WORD}){_R}"
EN_CITED = (
    f"(?P<v>[A-Z]{_L}{_EN_TAIL}[ ][A-Z]\\.(?:[ ]?[A-Z]\\.)?)"
    r"(?=[,;]|[ ]and[ ]|[ ]et[ ]al|[ ]\(?[12][0-9]{3}|[ ][A-Z][a-z])"
)
EN_LAST_FIRST = f"(?P<v>[A-Z]{_L}{_EN_TAIL},[ ]{_CAP}){_R}"
EN_AIRLINE = (
    f"(?P<v>[A-Z]{_L}[A-Z]{{1,19}}/[A-Z]{{2,20}}(?:[ ](?:MRS|MR|MSTR|MS|MISS|DR))?)"
    "(?![0-9A-Za-z_/])"
)
_VI_SUR = "|".join(sorted(VI_SURNAMES, key=_longest_first))
_KO_SUR = "|".join(sorted(KO_SURNAMES, key=_longest_first))
EN_VIETNAMESE = (
    f"(?P<v>(?<![0-9A-Za-z_{_VI_LOWER}{_VI_UPPER}])(?:{_VI_SUR})"
    f"(?:[ ][{_VI_UPPER}][{_VI_LOWER}]{{1,8}}){{1,3}})(?![0-9A-Za-z_{_VI_LOWER}{_VI_UPPER}])"
)
EN_KOREAN = (
    f"(?P<v>[A-Z]{_L}[a-z]{{1,6}}(?:[ ][A-Z][a-z]{{1,6}}-[a-z]{{1,6}}"
    f"|-[a-z]{{1,6}}[ ](?:{_KO_SUR})))(?![0-9A-Za-z_-])"
)
EN_MIXED_SCRIPT = f"(?P<v>[A-Z]{_L}[a-z]{{1,12}}[{_SINGLE}]|阿[A-Z][a-z]{{1,12}}){_R}"


def _family_word(word: str) -> bool:
    return word in _EN_FAMILY_ALL or word.title() in PINYIN_SURNAMES or _structural_family(word)


def en_three_words_ok(value: str, text: str, start: int) -> bool:
    """ "Margaret Anne Hughes": two given names and a family name."""
    first, middle, last = value.split(" ")
    return first in _EN_GIVEN_ALL and middle in _EN_GIVEN_ALL and last not in EN_NOT_FAMILY


def en_initials_ok(value: str, text: str, start: int) -> bool:
    """ "J. R. Smith", "D. K. Patel": initials and a family name from the tables."""
    last = value.rsplit(".", 1)[1].strip()
    return _family_word(last) and last not in EN_NOT_FAMILY


def en_cited_ok(value: str, text: str, start: int) -> bool:
    """ "Vaswani A.," in a reference list: a family name and initials."""
    family = value.split(" ", 1)[0]
    return family not in _NOT_CITED and family not in EN_NOT_NAME and _family_word(family)


_NAME_LIST_AROUND = re.compile("[A-Za-z][ ]$")


def en_last_first_ok(value: str, text: str, start: int) -> bool:
    """ "Zhou, Jennifer": a family name, a comma and a given name, both from the tables."""
    family, given = value.split(", ")
    if (
        _NAME_LIST_AROUND.search(text, max(0, start - 2), start)
        or text[start + len(value) : start + len(value) + 2][1:].isupper()
    ):
        return False  # "Omar Haddad, Leila Nasser": two names in a list, not one turned round
    return _family_word(family) and given in _EN_GIVEN_ALL


def en_airline_ok(value: str, text: str, start: int) -> bool:
    """ "WANG/FANG MS": a family name in capitals, a slash and the given name."""
    family = value.split("/", 1)[0].title()
    return family in PINYIN_SURNAMES or family in _EN_FAMILY_ALL


def en_vietnamese_ok(value: str, text: str, start: int) -> bool:
    """ "Nguyễn Thị Hương": a Vietnamese surname, with its diacritics or the unmistakable Nguyen."""
    words = value.split(" ")
    return words[0] in VI_SURNAMES and (words[0].startswith("Nguy") or not value.isascii())


def en_korean_ok(value: str, text: str, start: int) -> bool:
    """ "Kim Ji-woo", "Ji-woo Kim": a Korean surname and a hyphenated given name."""
    words = value.split(" ")
    return (words[0] if "-" in words[1] else words[1]) in KO_SURNAMES


def en_mixed_script_ok(value: str, text: str, start: int) -> bool:
    """ "Lucy陈", "阿May": an English given name glued to a surname or to 阿."""
    if value[0] == "阿":  # 阿 before a Latin word is always a familiar name ("阿May", "阿Q")
        return True
    return value[:-1] in _EN_GIVEN_ALL


# --- names where a form, a chat or a list places them ------------------------------------------
# "<role>：<name>": a label that names a person by the role (收款人, 核对人, 派件员, 术者, 一助, 甲方)
# and then whatever stands there up to the next punctuation: a full name with any surname, a
# nickname (贝贝), a transliterated name (阿卜杜拉), a surname before a title (柳会计), a Latin name.
_ROLE_SUFFIX = "人员者师生手主属长"
ZH_ROLE_LABELS = (
    "一助 二助 三助 主刀 术者 麻醉 器械 巡回 审核 核对 复核 审批 批准 签发 录入 编制 校对 拟稿 制表 "
    "经手 开单 收费 发药 配药 调配 检验 采样 值班 带教 接待 陪同 见证 监督 签收 署名 笔名 化名 "
    "昵称 网名 艺名 外号 小名 乳名 别名 英文名 中文名 真名 本名 原名 曾用名 户名 姓名 名字 甲方 乙方 "
    "丙方 丁方 买方 卖方 出租方 承租方 委托方 受托方 致 抄送 主送 宝宝 买家 卖家 出差 联系 面谈 原告 被告"
).split()
# Labels that name the person themselves or a relative: no colon needed ("真名李梓萱", "名字是常思远",
# "父亲危志强", "师父 岳不群").
_NAMING_LABELS = (
    "名字是|名字叫|名叫|真名|本名|原名|曾用名|化名|笔名|中文名|英文名|父亲|母亲|妻子|丈夫|儿子|女儿|"
    "师父|师傅|师兄|师姐|师弟|师妹|哥哥|姐姐|弟弟|妹妹|舅舅|姑姑|叔叔|伯伯|爷爷|奶奶|外公|外婆|"
    "室友|女友|男友|老婆|老公|爱人|签名|签字|署名|联系其女|联系其子"
)
_ROLE_LABEL = (
    f"(?:[{HAN}]{{0,4}}[{_ROLE_SUFFIX}]|{'|'.join(sorted(ZH_ROLE_LABELS, key=_longest_first))})"
)
_TITLE_ALT = "|".join(sorted(ZH_TITLES, key=_longest_first))
# Characters that end a name after a role: a conjunction, a verb (诗人李白与…, 本人施洛授权…).
_VALUE_END = "与和及跟说在是的等授同申确声承委签"
_ROLE_VALUE = (
    f"[{HAN}](?=(?:{_TITLE_ALT})(?![{HAN}]))"  # 柳会计, 王总
    f"|[{HAN}]{{2,6}}?(?:·[{HAN}]{{2,6}})?(?=(?:{_TITLE_ALT})|[^{HAN}]|$|[{_VALUE_END}])"  # 钟少华
)
ZH_ROLE_NAME = (
    f"(?:{_ROLE_LABEL}(?:[:：][ 　]{{0,2}}|[ 　]{{1,2}}|(?<=[人者])(?={_SURNAME_START}))"
    f"|(?:{_NAMING_LABELS})[:：]?[ 　]{{0,2}})"
    f"(?P<v>{_ROLE_VALUE}|[A-Z][a-z]{{1,20}}(?:[ ][A-Z][a-z]{{1,20}}){{0,2}}(?![A-Za-z]))"
)
ZH_ROLE_TRIGGERS = (
    f"[{_ROLE_SUFFIX}](?:[:：]|[ 　])",
    f"[人者]{_SURNAME_START}",
    f"(?:{'|'.join(ZH_ROLE_LABELS)})(?:[:：]|[ 　])",
    f"(?:{_NAMING_LABELS})",
)
_ROLE_HIT_REACH = 2 + max(5, *(len(x) for x in ZH_ROLE_LABELS + _NAMING_LABELS.split("|")))
# Every trigger's text opens the gate (a role ending in 人/者 straight before a surname too:
# "本人施洛授权"), or the `re` engine would skip what Hyperscan's triggers find.
ZH_ROLE_GATE = (
    f"[{_ROLE_SUFFIX}][:： 　]|[人者]{_SURNAME_START}|{'|'.join(ZH_ROLE_LABELS)}|{_NAMING_LABELS}"
)
# The last characters of a role or an organization, not a name (项目经理部, 财务室).
_ORG_TAIL = set("人员者师司局部院所厂店社队处科组室办委厅行馆校站")
_ALL_NOT_NAMES = ZH_NOT_NAMES | ZH_NOT_NAMES_MORE | ZH_ROLE_WORDS


# Last characters of things, not people (支付卡, 杜康酒, 华山派, 曾用名, 车险报案).
_THING_TAIL = set(
    "卡酒派名费款额单号码表证书件品类型式法率期价税险案物药病症会团系城宫殿堂阁亭台塔洞厅口"
)
# Particles and verbs that no given name holds after its surname ("查到了", "高的").
_FUNCTION_CHARS = set("了的着过吗呢吧啊呀哦嘛是在有到也都就没很太")


@lru_cache(maxsize=65_536)
def _zh_name_shape(value: str) -> bool:
    """Does a run of Chinese characters read as a name, a nickname or a familiar form?"""
    if value[0] in _ANY_SURNAME or value[:2] in _COMPOUND_SET:
        return True
    if value[0] in "小老大阿" and (value[1] in _ANY_SURNAME or value[1] in _GIVEN_SET):
        return True  # 老周, 小雨, 阿杰
    if len(value) == 2 and value[0] == value[1]:
        return True  # 贝贝, 朵朵
    if all(c in _TRANSLIT_SET for c in value.replace("·", "")):
        return True  # 阿卜杜拉, 古丽米拉
    if all(c in _GIVEN_SET for c in value):
        return True  # a given name alone: 博文, 佳慧
    return _segmenter()[2].get(value, "").startswith(_NR)


def _known_name(value: str, count: int) -> bool:
    """A word jieba tags as a name that is one: its frequent two-character "names" are often words
    (顾客, 麻醉, 谢谢); three characters from a surname are names (岳不群, 曹雪芹)."""
    if count < _COMMON_FREQ:
        return True
    return len(value) > 2 and (value[0] in _ANY_SURNAME or value[:2] in _COMPOUND_SET)


@lru_cache(maxsize=65_536)
def _zh_words_only(value: str) -> bool:
    """Is `value` made of common words only (通过, 已完成, 见附件), as jieba cuts it?"""
    _, freq, tags, _ = _segmenter()
    if value in _ALL_NOT_NAMES or value[-1] in _THING_TAIL:
        return True
    count = freq.get(value, 0)
    if tags.get(value, "").startswith(_NR) and _known_name(value, count):
        return False
    if count >= _RARE_FREQ:
        return True
    if len(value) < 3:
        return False
    if value[1] in _FUNCTION_CHARS:
        return True  # "查到了"
    if value[:2] not in _COMPOUND_SET and freq.get(value[:2], 0) >= _COMMON_FREQ:
        return True  # "关系紧张" (not 夏侯|惇)
    words = list(_segmenter()[0].cut(value, False))
    if len(words[0]) == 1 and words[0] in _SINGLE_SET:
        return False  # a surname and a given name that is a word: 柳|飘飘, 段|小楼 (not 经|研究)
    return (
        len(words) > 1
        and all(len(w) == 1 or _common_word(w, freq, tags) for w in words)
        and any(len(w) > 1 for w in words)
    )


def zh_role_name_ok(value: str, text: str, start: int) -> bool:
    """A name after "<role>：": never a role, an organization, a place or plain words."""
    if value.isascii():
        words = value.split(" ")
        return words[0] not in EN_NOT_NAME and not any(w in EN_NOT_FAMILY for w in words[1:])
    if len(value) == 1:
        return value in _ANY_SURNAME
    name = value.split("·", 1)[0]
    if len(name) > 4 and not all(c in _TRANSLIT_SET for c in name):
        return False  # only a transliterated name is that long (努尔麦麦提)
    if value[-1] in _ORG_TAIL or value[-1] in _PLACE_TAIL or _WEEKDAY.match(value):
        return False
    familiar = (
        len(name) == 2 and name[0] in "小老" and name[1] in _ANY_SURNAME
    )  # 老周: a word to jieba
    translit = len(name) > 3 and all(c in _TRANSLIT_SET for c in name)  # 努尔|麦|麦|提 to jieba
    if not _zh_name_shape(name) or (_zh_words_only(name) and not (familiar or translit)):
        return False
    if name in _ALL_NOT_NAMES:
        return False
    if text[start - 1] in "人者" and not (
        len(name) <= 3
        and (name[0] in _SINGLE_SET or name[:2] in _COMPOUND_SET)
        and (not _zh_words_only(name) or _segmenter()[2].get(name, "").startswith(_NR))
    ):
        return False  # glued to its role ("出差人尹天仇、", "诗人李白"): a plain full name only
    if text[start - 1] not in ":：" and not _strict_name_shape(name):
        return False  # without a colon ("派件员 老周", "父亲危志强"): a surname or a familiar form
    return not text.startswith(_PLACE_AFTER, start + len(value))


def _strict_name_shape(value: str) -> bool:
    return (
        value[0] in _ANY_SURNAME
        or value[:2] in _COMPOUND_SET
        or (value[0] in "小老阿" and value[1] in _ANY_SURNAME)
    )


# "晨晨爸爸", "宝宝朵朵": a reduplicated given name (a child's, a pet name) beside a kinship word.
_KIN_AFTER = "爸爸|妈妈|奶奶|爷爷|外婆|外公|姥姥|姥爷|家长|妈|爸"
_CHILD_BEFORE = "宝宝|小朋友|孩子|女儿|儿子|患儿|孙子|孙女|外孙|外孙女|闺女|宝贝"
ZH_NICKNAME_BEFORE_KIN = f"(?P<v>(?P<c>[{HAN}])(?P=c))(?:{_KIN_AFTER})"
ZH_NICKNAME_AFTER_CHILD = f"(?:{_CHILD_BEFORE})[:：]?[ ]?(?P<v>(?P<c>[{HAN}])(?P=c))(?![{HAN}])"


def zh_nickname_ok(value: str, text: str, start: int) -> bool:
    """朵朵, 晨晨: a given-name character twice, not a word (妈妈, 天天, 明明)."""
    _, freq, tags, _ = _segmenter()
    if value in _ALL_NOT_NAMES:
        return False
    return freq.get(value, 0) < _COMMON_FREQ or tags.get(value, "").startswith(_NR)


@lru_cache(maxsize=65_536)
def _speaker_shape(value: str) -> bool:
    """A chat speaker or a table cell: a name with a surname (and a given-name character where jieba
    does not know the word: "查体" is a heading), a familiar form, a nickname, a known name."""
    if value in _ALL_NOT_NAMES or value[-1] in _ORG_TAIL or value[-1] in _PLACE_TAIL:
        return False
    if _WEEKDAY.match(value):
        return False
    _, freq, tags, _ = _segmenter()
    if (
        tags.get(value, "").startswith(_NR)
        and _known_name(value, freq.get(value, 0))
        and value[-1] not in _THING_TAIL
    ):
        return True
    if len(value) == 2 and value[0] in "小老阿" and value[1] in _ANY_SURNAME:
        return True  # 老张, 小赵 (words to jieba, names here)
    if value[:2] in _COMPOUND_SET:
        return not _zh_words_only(value)  # (夏侯 is a word to jieba)
    if _zh_words_only(value) or _zh_words_only(value[:2]):
        return False
    if len(value) > 3 and not all(c in _TRANSLIT_SET for c in value):
        return False  # four characters and one surname: a phrase ("蒙版为空")
    if value[0] in _WEAK_BEFORE_TITLE and not all(c in _GIVEN_SET for c in value[1:]):
        return False  # 高, 文, 白 start many words ("高阈值", "文生图"): given-name characters only
    if value[0] not in _SINGLE_SET:  # 于, 常, 经: more often a word's start than a surname
        if value[0] not in _ANY_SURNAME:
            return False
        first = next(iter(_segmenter()[0].cut(value, False)))
        return all(c in _GIVEN_SET for c in value[1:]) or (
            len(first) > 1 and tags.get(first, "").startswith(_NR)  # 巩俐|娜
        )
    return len(value) > 2 or value[1] in _GIVEN_SET


# "老张：今晚…", "许仙：好的": a name that starts a line and is followed by a colon (a chat log).
# (A line starts after a newline, at the text's start, or after the NULs that join a batch's texts.)
ZH_SPEAKER = f"(?P<v>[{HAN}](?<![^\\n\\x00].)[{HAN}]{{1,3}})[ ]?[:：]"
_LINE_START = f'(?:^|[\\n\\x00"]|{_ESCAPED_NEWLINE})'
ZH_SPEAKER_TRIGGERS = (f"{_LINE_START}(?:{_SURNAME_START}|[小老大阿])[{HAN}]{{1,3}}[ ]?[:：]",)


def _title_inside(value: str, text: str, start: int) -> bool:
    """Does a title start inside `value` ("钟小" of "钟小姐", "王总说")?"""
    return any(
        value[k] in _SHORT_TITLES
        or (value[k] in _LONG_TITLE_FIRST and text.startswith(_LONG_TITLES, start + k))
        for k in range(1, len(value))
    )


def zh_speaker_ok(value: str, text: str, start: int) -> bool:
    if not (value[0] in _ANY_SURNAME or value[0] in "小老大阿" or value[:2] in _COMPOUND_SET):
        return False  # (what the trigger asks for)
    return not _title_inside(value, text, start) and _speaker_shape(value)


# A name that is all the Chinese there is between punctuation, digits or Latin text: a table cell,
# a CSV field, a list item ("1. 郭敬明 护照…", "急寻！吕子乔，男"), with any given-name characters.
ZH_APART = (
    f"(?P<v>[{_ANY_SURNAME_CLASS}](?<![{HAN}].)[{HAN}]{{1,2}}"
    f"|(?:{'|'.join(_COMPOUND)})(?<![{HAN}]..)[{HAN}]{{1,2}})(?![{HAN}])"
)
ZH_APART_TRIGGERS = (f"(?:^|[^{HAN}]){_SURNAME_START}[{HAN}]{{1,2}}(?:[^{HAN}]|$)",)


_NUMERAL = re.compile(r"(?:[0-9一二两三四五六七八九十百千几多每}]|%d)\s*$")  # "{count} 张图像"


def zh_apart_ok(value: str, text: str, start: int) -> bool:
    if start and text[start - 1] in "《“‘\"'":
        return False  # a title or a quoted term: 《红楼梦》, “钱学森班”
    if value[0] in "张位" and _NUMERAL.search(text, max(0, start - 3), start):
        return False  # a measure word: "50 张图片"
    return not _title_inside(value, text, start) and _speaker_shape(value)


# "薛冰、潘建伟、巩俐娜、郝帅": an item of a list of names (、), up to "等" or punctuation.
ZH_LISTED_FIRST = f"(?P<v>[{HAN}](?<![{HAN}].)[{HAN}]{{1,3}})、"
ZH_LISTED_NEXT = f"、(?P<v>[{HAN}]{{2,4}}?)(?=等|都|[^{HAN}]|$)"
ZH_LISTED_FIRST_TRIGGERS = (f"{_SURNAME_START}[{HAN}]{{1,3}}、",)
ZH_LISTED_NEXT_TRIGGERS = (f"、{_SURNAME_START}",)


def zh_listed_ok(value: str, text: str, start: int) -> bool:
    if not (value[0] in _ANY_SURNAME or value[:2] in _COMPOUND_SET):
        return False
    return not _title_inside(value, text, start) and _speaker_shape(value)


# Latin-script speakers and mentions: "Kevin: 晚上的meeting", "Agent (Tom): Sorry", "@Kevin", a
# sign-off line ("Marco"), "Paul — the VPN"; a given name glued to Chinese ("Tony说", "抄送Grace").
EN_SPEAKER = (
    f"(?P<v>[A-Z](?<![^\\n\\x00(].)[{_LO}]{{1,15}}(?:[ ][A-Z][{_LO}]{{1,15}})?)"
    f"(?:\\)?[ ]?[:：]|[ ][—–][ ]|[ ]?(?=[\\n\\x00])|[ ]?$)"
)
# (The validator wants a given name from the tables: the trigger asks for one.)
_EN_SPEAKER_NAME = f"(?:{_GIVEN_ALT})(?:[ ][A-Z][{_LO}]{{1,15}})?"
EN_SPEAKER_TRIGGERS = (  # one pattern for the three ends: a colon, a dash, the line's end
    f"(?:{_LINE_START}|\\(){_EN_SPEAKER_NAME}"
    f'(?:\\)?[ ]?[:：]|[ ][—–][ ]|[ ]?(?:{_ESCAPED_NEWLINE}|[\\n\\x00\\r"]|$))',
)
# Software, places and words that are also given names, never a person glued to Chinese.
_EN_NOT_PERSON_WORDS = frozenset(
    "Adam Ruby Julia Jenkins Cassandra Apple Alexa Siri Cortana Tesla Ford Dell Harley Victoria "
    "Georgia Jordan Chelsea Florence Austin Phoenix Paris Sydney Lincoln Washington Hudson Chase "
    "Mercedes Max May June April August Mark Will Bill Pat Rose Hope Faith Joy Amber Crystal Jade "
    "Kafka Django Flask Spring Jupyter Ada Pascal Jasmine Mocha Karma Jest Hugo Jekyll Sphinx Nova "
    "Travis Jarvis Luna Stella Corona Ginger Candy Honey Angel Summer Autumn Dawn Sky Brook Pearl "
    "Violet Olive Rich Frank Art Guy Sonny Buddy Bob Sam Ken Leo Lily Iris Ivy Hazel Sage Holly "
    "Dior Chanel Cartier Gucci Prada Hermes Armani Ferrari Lamborghini Porsche Bentley Morgan "
    "Santa Christian Catholic Jesus Maria Madonna Gabriel Michael Raphael".split()
)


def en_speaker_ok(value: str, text: str, start: int) -> bool:
    words = value.split(" ")
    if words[0] not in _EN_GIVEN_ALL or words[0] in EN_NOT_NAME:
        return False
    if len(words) == 2 and (words[1] in EN_NOT_FAMILY or words[1] in EN_NOT_NAME):
        return False
    return len(words) == 2 or words[0] not in _EN_NOT_PERSON_WORDS


EN_MENTION = f"[@](?<![0-9A-Za-z_.].)(?P<v>[A-Z][{_LO}]{{1,15}})(?![0-9A-Za-z_.@-])"
EN_BESIDE_HAN = "(?P<v>[A-Z](?<![0-9A-Za-z_].)[a-z]{1,14})(?![0-9A-Za-z_])"


def en_mention_ok(value: str, text: str, start: int) -> bool:
    return value in _EN_GIVEN_ALL and value not in _EN_NOT_PERSON_WORDS


def en_beside_han_ok(value: str, text: str, start: int) -> bool:
    end = start + len(value)
    if not ((start and _is_han(text[start - 1])) or (end < len(text) and _is_han(text[end]))):
        return False
    return value in _EN_GIVEN_ALL and value not in _EN_NOT_PERSON_WORDS and value not in EN_NOT_NAME


# "Vaswani 等人（2017）", "Hinton et al.": a family name before "et al."/等人.
EN_ET_AL = "(?P<v>[A-Z](?<![0-9A-Za-z_].)[a-z]{2,20})(?=[ ]?等人|[ ]et[ ]al)"


def en_et_al_ok(value: str, text: str, start: int) -> bool:
    return _family_word(value) and value not in _NOT_CITED


# "木子（笔名）", "来访者小雨（化名）": what stands before "(pen name)", "(alias)" is a name.
_ALIAS_WORDS = "笔名|化名|昵称|网名|艺名|小名|乳名|曾用名|英文名|真名|本名|别名"
ZH_ALIAS = (
    f"(?P<v>[{HAN}](?:(?<![{HAN}].)|(?<=[{_ROLE_SUFFIX}].))[{HAN}]{{1,2}})"
    f"(?=[（(](?:{_ALIAS_WORDS})[）)])"
)


def zh_alias_ok(value: str, text: str, start: int) -> bool:
    return not (
        value in _ALL_NOT_NAMES
        or value[-1] in _ORG_TAIL
        or value[-1] in _PLACE_TAIL
        or value[-1] in _THING_TAIL
    )


# A duty roster: "周一俞敏，周二仲夏": a name after a weekday, up to punctuation.
# (The end of a text is followed by NULs in a batch, by '"' or an escape in raw JSON.)
ZH_ROSTER = f"(?:周|星期)[一二三四五六日天](?P<v>[{HAN}]{{2,3}})(?=[，,、；;。 \\x00\\n]|$)"


def zh_roster_ok(value: str, text: str, start: int) -> bool:
    return _speaker_shape(value) or (
        len(value) == 2
        and _segmenter()[2].get(value, "").startswith(_NR)
        and _segmenter()[1].get(value, 0) < _COMMON_FREQ
    )


class PersonForm(NamedTuple):
    """A PERSON recognizer of this module, for `pii_recognizers.RECOGNIZERS`."""

    name: str
    pattern: str
    triggers: tuple[str, ...]
    gate: str
    validate: Callable[[str, str, int], bool]
    reach_after: int = 0
    hit_reach: int = 0  # see `pii_recognizers.Recognizer.hit_reach`


MORE_PERSON_FORMS: tuple[PersonForm, ...] = (
    # A role label is at most 5 characters and its trigger ends within 2 more: the search starts
    # just before the hit, not a whole match's width (a Latin name) before it.
    PersonForm(
        "zh_name_after_role",
        ZH_ROLE_NAME,
        ZH_ROLE_TRIGGERS,
        ZH_ROLE_GATE,
        zh_role_name_ok,
        hit_reach=_ROLE_HIT_REACH,
    ),
    PersonForm(
        "zh_name_in_roster",
        ZH_ROSTER,
        (f'(?:周|星期)[一二三四五六日天][{HAN}]{{2,3}}(?:[，,、；;。 \\x00\\n"\\\\]|$)',),
        "周|星期",
        zh_roster_ok,
    ),
    PersonForm(
        "zh_name_before_alias",
        ZH_ALIAS,
        (f"[（(](?:{_ALIAS_WORDS})",),
        f"[（(](?:{_ALIAS_WORDS})",
        zh_alias_ok,
        reach_after=5,
    ),
    PersonForm("zh_speaker", ZH_SPEAKER, ZH_SPEAKER_TRIGGERS, "[:：]", zh_speaker_ok, hit_reach=7),
    PersonForm("zh_name_apart", ZH_APART, ZH_APART_TRIGGERS, ZH_FREE_GATE, zh_apart_ok),
    PersonForm(
        "zh_name_listed_first", ZH_LISTED_FIRST, ZH_LISTED_FIRST_TRIGGERS, "、", zh_listed_ok, 1
    ),
    PersonForm("zh_name_listed_next", ZH_LISTED_NEXT, ZH_LISTED_NEXT_TRIGGERS, "、", zh_listed_ok),
    PersonForm(
        "en_speaker", EN_SPEAKER, EN_SPEAKER_TRIGGERS, "[A-Z][a-z]", en_speaker_ok, reach_after=3
    ),
    PersonForm("en_mention", EN_MENTION, ("@[A-Z][a-z]",), "@[A-Z]", en_mention_ok),
    PersonForm(
        "en_beside_han",
        EN_BESIDE_HAN,
        (f"[{HAN}][A-Z][a-z]", f"[A-Z][a-z]{{1,14}}[{HAN}]"),
        f"[{HAN}][A-Z]|[a-z][{HAN}]",
        en_beside_han_ok,
        reach_after=1,
    ),
    PersonForm(
        "en_name_et_al",
        EN_ET_AL,
        ("[a-z][ ]?等人", "[a-z][ ]et[ ]al"),
        "等人|et al",
        en_et_al_ok,
        reach_after=6,
    ),
    PersonForm(
        "zh_nickname_before_kin",
        ZH_NICKNAME_BEFORE_KIN,
        (_KIN_AFTER,),
        _KIN_AFTER,
        zh_nickname_ok,
    ),
    PersonForm(
        "zh_nickname_after_child",
        ZH_NICKNAME_AFTER_CHILD,
        (_CHILD_BEFORE,),
        _CHILD_BEFORE,
        zh_nickname_ok,
    ),
    PersonForm(
        "zh_name_in_text_long", ZH_FREE_LONG, (ZH_FREE_LONG_TRIGGER,), ZH_FREE_GATE, zh_free_ok
    ),
    PersonForm(
        "zh_name_in_text_short", ZH_FREE_SHORT, ZH_FREE_SHORT_TRIGGERS, ZH_FREE_GATE, zh_free_ok
    ),
    PersonForm(
        "zh_name_dotted",
        ZH_DOTTED,
        ("·",),
        "·",
        zh_dotted_ok,
    ),
    PersonForm(
        "en_name_three_words",
        EN_THREE_WORDS,
        ("[a-z][ ][A-Z][a-z]{1,20}[ ][A-Z]",),
        "[a-z] [A-Z][a-z]+ [A-Z]",
        en_three_words_ok,
    ),
    PersonForm(
        "en_name_initials",
        EN_INITIALS,
        (r"[A-Z]\.[ ]?(?:[A-Z]\.[ ]?){0,2}[A-Z]",),
        r"[A-Z]\.",
        en_initials_ok,
    ),
    PersonForm("en_name_cited", EN_CITED, (r"[a-z][ ][A-Z]\.",), r"[a-z] [A-Z]\.", en_cited_ok),
    PersonForm(
        "en_name_last_first",
        EN_LAST_FIRST,
        (r"[a-z],[ ][A-Z][a-z]",),
        "[a-z], [A-Z]",
        en_last_first_ok,
    ),
    PersonForm("en_name_airline", EN_AIRLINE, ("[A-Z]{2}/[A-Z]{2}",), "[A-Z]/[A-Z]", en_airline_ok),
    PersonForm(
        "vi_name", EN_VIETNAMESE, (f"(?:{_VI_SUR})[ ]",), f"(?:{_VI_SUR}) ", en_vietnamese_ok
    ),
    PersonForm("ko_name", EN_KOREAN, ("[A-Z][a-z]{1,6}-[a-z]",), "[a-z]-[a-z]", en_korean_ok),
    PersonForm(
        "mixed_script_name",
        EN_MIXED_SCRIPT,
        (f"[a-z][{_SINGLE}]", "阿[A-Z]"),
        f"[a-z][{_SINGLE}]|阿[A-Z]",
        en_mixed_script_ok,
    ),
)
