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
    EN_FAMILY_NAMES_MORE,
    EN_GIVEN_NAMES,
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
    ZH_GIVEN_CHARS_MORE,
    ZH_NOT_NAMES,
    ZH_SINGLE_SURNAMES,
)

# The census lists decide unlabeled "Given Family" pairs on their own; the longer lists need more
# (a family name from the tables too, a greeting, a sign-off).
_EN_GIVEN_ALL = EN_GIVEN_NAMES | EN_GIVEN_NAMES_MORE
_EN_FAMILY_ALL = EN_FAMILY_NAMES | EN_FAMILY_NAMES_MORE
HAN = "一-鿿"
_B = r"(?:\\[bfnrt]|\b)"  # a word boundary, or a JSON escape standing for one (raw-byte triggers)

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
_SINGLE = "".join(sorted(set(ZH_SINGLE_SURNAMES) - _NOT_SURNAME))
_COMPOUND = tuple(dict.fromkeys(ZH_COMPOUND_SURNAMES))
_GIVEN = "[" + "".join(sorted(set(ZH_GIVEN_CHARS + ZH_GIVEN_CHARS_MORE))) + "]"
ZH_SURNAME = f"(?:{'|'.join(_COMPOUND)}|[{_SINGLE}])"
ZH_NAME = f"{ZH_SURNAME}{_GIVEN}{{1,2}}"

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
ZH_BEFORE = f"(?:{'|'.join(sorted(set(ZH_LABELS), key=len, reverse=True))})[:：，,]?[ 　]{{0,2}}"
ZH_TITLES = (
    "先生 女士 小姐 医生 医师 大夫 老师 经理 同志 主任 教授 律师 护士 师傅 院长 校长 总监 处长 科长 "
    "局长 部长 书记 阿姨 同学 工程师 博士 主管 专员 警官 队长 组长 您好 你好"
).split()
ZH_AFTER = f"(?:{'|'.join(ZH_TITLES)})"
_TITLES_TUPLE = tuple(ZH_TITLES)
# A title right after a surname: the name is the surname and zero to two given-name characters.
ZH_TITLED = f"(?P<v>{ZH_SURNAME}{_GIVEN}{{0,2}}){ZH_AFTER}"
ZH_TITLED_TRIGGER = f"{ZH_SURNAME}(?:{_GIVEN}{{0,2}}){ZH_AFTER}"
CONTEXT = 8  # how far before a name its validators look (a label before a titled name)
_WEEKDAY = re.compile("(?:周|星期|礼拜)[一二三四五六七日天末]")
_LABEL_BEFORE = re.compile(
    f"(?:{'|'.join(sorted(set(ZH_LABELS), key=len, reverse=True))})[:：，,]?[ 　]{{0,2}}$"
)
_HAN_CHAR = re.compile(f"[{HAN}]")
_FIRM = ("律师事务所", "律所", "会计师事务所")


def zh_name_ok(value: str, text: str, start: int) -> bool:
    """A labeled Chinese name: never a weekday ("周一至周五"), never cut into a title ("感谢钟小姐"
    is 钟, found before its title)."""
    if any(text.startswith(_TITLES_TUPLE, start + k) for k in range(1, len(value))):
        return False
    return _WEEKDAY.match(value) is None


def zh_titled_ok(value: str, text: str, start: int) -> bool:
    """A name before a title, unless its surname is the end of a word ("语文老师", "主任医师")."""
    if _WEEKDAY.match(value):
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
_EN_TAIL = "(?:[a-z]{1,20}(?:[A-Z][a-z]{1,20})?|['’][A-Z][a-z]{1,20})"  # Smith, McDonald, O'Brien
EN_WORD = f"[A-Z]{_EN_TAIL}(?:-[A-Z]{_EN_TAIL})?"
EN_UPPER = "[A-Z]{2,12}"  # a family name in capitals: "ZHANG Wei"
EN_NAME = f"(?:{EN_WORD}|{EN_UPPER})(?:[ ](?:[A-Z]\\.[ ])?{EN_WORD}){{0,2}}"
EN_TITLE = r"(?:Mrs|Mr|Ms|Miss|Mx|Dr|Prof)\.?[ ]{1,2}"
_EN_STRICT_TITLE = re.compile(r"(?:Dr|Prof)\.?[ ]{1,2}$")
_WORD_SPLIT = re.compile(r"[ ]+(?:[A-Z]\.[ ])?")
# Labels after which capitalized words are a name unless they are a common label word ("Dear
# Customer"); the weak ones ("Hi", "From:") also need a word from the name tables.
EN_STRONG_LABELS = (
    "Name:|Full name:|Name：|Customer name:|Customer|Patient:|Patient name:|Attn:|Attn|Attention:|"
    "Dear|Cardholder:|Card holder:|Account holder:|Account name:|Policyholder:|Policy holder:|"
    "Insured:|Beneficiary:|Employee:|Applicant:|Recipient:|Ship to:|Deliver to:|Bill to:|"
    "Contact person:|Signed:|Signature:|Referred by|Passenger:|Guest:|Tenant:|Landlord:"
).split("|")
EN_WEAK_LABELS = (
    "Hi|Hello|Hey|Thanks,|Thank you,|Regards,|regards,|wishes,|Best,|Sincerely,|sincerely,|"
    "Cheers,|From:|To:|Cc:|CC:|"
    "Contact:|Manager:|assigned to|this is|This is|my name is|My name is|I am|I'm|signed by|"
    "approved by|written by|reported by|Agent:|Owner:|Reviewer:|Author:"
).split("|")


def _labels(labels: list[str]) -> str:
    return "|".join(re.escape(x) for x in sorted(set(labels), key=len, reverse=True))


EN_LABEL_GAP = r"[ ]{0,2}\n?[ ]{0,2}"
EN_AFTER_STRONG = f"(?:{_labels(EN_STRONG_LABELS)}){EN_LABEL_GAP}(?P<v>{EN_NAME})(?![A-Za-z])"
EN_AFTER_WEAK = f"(?:{_labels(EN_WEAK_LABELS)}){EN_LABEL_GAP}(?P<v>{EN_NAME})(?![A-Za-z])"
EN_LABEL_REACH = max(len(x) for x in EN_STRONG_LABELS + EN_WEAK_LABELS)
EN_LABEL_TRIGGERS_STRONG = tuple(re.escape(x) for x in EN_STRONG_LABELS)
EN_LABEL_TRIGGERS_WEAK = tuple(re.escape(x) for x in EN_WEAK_LABELS)

# A known given name, an optional initial, then a capitalized family name.
_GIVEN_ALT = "|".join(sorted(_EN_GIVEN_ALL, key=len, reverse=True))
EN_FREE = (
    r"(?P<v>[A-Z](?<![0-9A-Za-z_].)[a-z]{1,20}(?:[ ][A-Z]\.)?[ ]"
    rf"{EN_WORD})(?![0-9A-Za-z_])"
)
EN_FREE_REACH = max(len(x) for x in _EN_GIVEN_ALL) + len(" B. W")
EN_FREE_TRIGGER = rf"{_B}(?:{_GIVEN_ALT})[ ](?:[A-Z]\.[ ])?[A-Z]"

_PY_SUR_ALT = "|".join(
    sorted(
        {s for s in PINYIN_SURNAMES} | {s.upper() for s in PINYIN_SURNAMES}, key=len, reverse=True
    )
)
PINYIN_PAIR = (
    r"(?P<v>[A-Z](?<![0-9A-Za-z_].)(?:[a-z]{1,11}|[A-Z]{1,11})[ ][A-Z][a-z]{1,11})"
    r"(?![0-9A-Za-z_])"
)
PINYIN_TRIGGERS = (
    rf"{_B}(?:{_PY_SUR_ALT})[ ][A-Z][a-z]",  # surname first, "Zhang Wei", "ZHANG Wei"
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


def en_titled_ok(value: str, text: str, start: int) -> bool:
    """After Dr./Prof. one word must look like a family name ("Dr Pepper" is a drink)."""
    words = _WORD_SPLIT.split(value)
    if words[0] in EN_NOT_NAME:
        return False
    if len(words) == 1 and _EN_STRICT_TITLE.search(text, max(0, start - 8), start):
        return _is_name_word(value) or _structural_family(value) or pinyin_word(value)
    return True


def en_strong_label_ok(value: str, text: str, start: int) -> bool:
    words = _WORD_SPLIT.split(value)
    return words[0] not in EN_NOT_NAME and words[-1] not in EN_NOT_FAMILY


def en_weak_label_ok(value: str, text: str, start: int) -> bool:
    words = _WORD_SPLIT.split(value)
    if words[0] in EN_NOT_NAME or words[-1] in EN_NOT_FAMILY:
        return False
    # "Agent: Sorry Pan Chen": the name must start right after the greeting.
    return _is_name_word(words[0]) or pinyin_name_ok(value, text, start, labeled=True)


def en_free_ok(value: str, text: str, start: int) -> bool:
    words = _WORD_SPLIT.split(value)
    if words[-1] in EN_NOT_FAMILY or _brand(value, text, start):
        return False
    return words[0] in EN_GIVEN_NAMES or (words[0] in _EN_GIVEN_ALL and words[-1] in _EN_FAMILY_ALL)


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
ZH_FREE_SHORT = f"(?P<v>{ZH_SURNAME}{_GIVEN}|{_FAMILIAR}[{_SINGLE}]|阿{_GIVEN})"
ZH_FREE_GATE = f"[{_SINGLE}{''.join(sorted({c[0] for c in _COMPOUND}))}阿]"
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
    """jieba's tokenizer, its word frequencies and part-of-speech tags, and the stop list.

    Imported and loaded on the first candidate (about 1 s and 60 MB), so that a process that
    never scans Chinese text never pays for it.
    """
    import jieba  # noqa: PLC0415
    import jieba.posseg  # noqa: PLC0415

    jieba.setLogLevel(60)  # no "Building prefix dict..." lines on stderr
    jieba.initialize()
    return jieba.dt, jieba.dt.FREQ, jieba.posseg.dt.word_tag_tab, ZH_NOT_NAMES


def _is_han(ch: str) -> bool:
    return "一" <= ch <= "鿿"


@lru_cache(maxsize=65_536)
def _cuts(window: str) -> frozenset[int]:
    """Offsets in `window` where jieba ends a word."""
    tok = _segmenter()[0]
    ends, pos = set(), 0
    for word in tok.cut(window, HMM=True):
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
    compound = value[:2] in _COMPOUND_SET
    familiar = len(value) == 2 and value[0] in "小老大阿"  # 小王, 老李, 阿杰
    if len(value) == 2 and not compound:
        # Two characters ("王芳", but also "索引", "高清") need a boundary around them.
        if not _short_name_placed(value, text, start, "" if familiar else value[1]):
            return False
    _, freq, tags, stop = _segmenter()
    if familiar:  # jieba counts some as rare nouns (小周 3): only a frequent word is one
        common = freq.get(value, 0) >= _FAMILIAR_FREQ and not tags.get(value, "").startswith(_NR)
    else:
        common = _common_word(value, freq, tags)
    if common or value in stop:
        return False
    if end < len(text) and text[end] in _PLACE_AFTER_FIRST and text.startswith(_PLACE_AFTER, end):
        return False
    if len(value) > 2 and tags.get(value, "").startswith(_NR):
        return True  # a name in jieba's dictionary (刘德华, 欧阳修)
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
)
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
_RARE_FREQ = 10
_FAMILIAR_FREQ = 50  # 大王 n, 大方 a, 小米 n are words; 小周 (3) and 小张 are not
_COMMON_FREQ = 100  # in jieba's counts: 鲁迅 1507, 李白 374, 熊猫 286, 雷雨 195; 刘德华 37
_GIVEN_SET = frozenset(ZH_GIVEN_CHARS + ZH_GIVEN_CHARS_MORE)
# Characters after which a word starts: particles, verbs and prepositions that take a person.
_LEFT_CUE = set("叫找给和与跟由让被的是及或对向请问谢告陪同见约拜访称把将带派交送喊帮替教经致、")
# Characters a short name is followed by: verbs, particles, conjunctions.
_RIGHT_CUE = set(
    "说的在是和与跟等已于称也都就还又来去到给打让把被讲问答笑哭做要会能可再才却正刚同回表认觉"
    "想看听找带接拿买写签发负主"
    "、"
)


# The short recognizer's triggers: a two-character name has a boundary on one side at least (a
# character that is not Chinese, the text's start or end, or a cue); a compound surname alone.
_SHORT = f"(?:[{_SINGLE}]{_GIVEN}|{_FAMILIAR}[{_SINGLE}]|阿{_GIVEN})"
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
_VI_SUR = "|".join(sorted(VI_SURNAMES, key=len, reverse=True))
_KO_SUR = "|".join(sorted(KO_SURNAMES, key=len, reverse=True))
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


class PersonForm(NamedTuple):
    """A PERSON recognizer of this module, for `pii_recognizers.RECOGNIZERS`."""

    name: str
    pattern: str
    triggers: tuple[str, ...]
    gate: str
    validate: Callable[[str, str, int], bool]


MORE_PERSON_FORMS: tuple[PersonForm, ...] = (
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
