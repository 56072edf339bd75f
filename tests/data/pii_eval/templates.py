"""Document templates of the evaluation set, by domain, written by hand.

`{KIND}` is a slot the generator fills: PII kinds become labeled spans, decoy kinds (DECOY_*)
become text that looks like PII and is not. As with the vocabularies, each domain's templates are
split by position into a dev half (even) and a test half (odd).
"""

from __future__ import annotations

MEDICAL = (
    "门诊病历\n姓名：{NAME_ZH}  性别：男  年龄：{AGE}岁\n主诉：反复咳嗽{N}天。\n"
    "既往史：高血压病史{N}年。\n接诊医生：{NAME_ZH}\n复诊请于{DATE}前预约，电话{LANDLINE}。",
    "患者{NAME_ZH}，女，{AGE}岁，因腹痛{N}天入院。入院时血压{BP}mmHg，家属{NAME_ZH}陪同，"
    "联系电话{MOBILE}。{SUR_ZH}医生周一至周五上午出诊。",
    "出院小结：患者{NAME_ZH}（身份证号{ID}）经治疗好转出院，嘱{N}周后复查。主治医师：{NAME_ZH}。"
    "用药：阿莫西林{N}00mg，每日{N}次。",
    "{SUR_ZH}医生您好，我是{NAME_ZH}的家属，想问一下复查结果。我的手机是{MOBILE}，"
    "门诊时间是周一至周五吗？",
    "Patient: {NAME_EN}, DOB {DATE}. Referred by Dr. {NAME_EN} for follow-up. "
    "Contact {MOBILE} or {EMAIL}. BP {BP} mmHg; next visit in {N} weeks.",
    "体检报告\n受检人：{NAME_ZH}\n身份证：{ID}\n体检编号：{DECOY_ORDER}\n血糖{G}mmol/L，建议复查。"
    "如有疑问请致电{LANDLINE}，或咨询{NAME_ZH}医生。",
    "Discharge note for {NAME_EN} (MRN {DECOY_ORDER}). Attending physician: Dr {LAST_EN}. "
    "The patient was advised to call {LANDLINE} if symptoms return.",
    "护理记录：{TIME}测体温{T}℃，已通知值班医生。患者{NAME_ZH}诉头晕，其女儿{NAME_ZH}（{MOBILE}）"
    "表示明日上午到院。{SUR_ZH}护士已处理。",
    "预约成功！就诊人：{NAME_ZH}，科室：心内科，医生：{NAME_ZH}主任，时间：{DATE} {TIME}。"
    "取号请携带身份证{ID}。",
    "Dear {NAME_EN},\nYour appointment with Dr. {NAME_EN} is confirmed for {DATE} at {TIME}. "
    "Please bring your insurance card. Questions? Call {LANDLINE}.\nSt. Mary Clinic",
)

BANK = (
    "尊敬的{NAME_ZH}先生：\n您尾号{N4}的账户于{DATE}转入人民币{AMOUNT}元。户名：{NAME_ZH}，"
    "卡号：{CARD}。如有疑问请拨打{LANDLINE}。",
    "尊敬的{NAME_ZH}女士，您的信用卡（{CARD}）本期账单{AMOUNT}元，最后还款日{DATE}。"
    "持卡人：{NAME_ZH}。客服热线{LANDLINE}。",
    "开户申请表\n户名：{NAME_ZH}\n证件号码：{ID}\n手机：{MOBILE}\n邮箱：{EMAIL}\n"
    "开户行：{COMPANY_ZH}{CITY}分行\n客户经理：{NAME_ZH}",
    "Dear {NAME_EN},\nWe received a payment of ${AMOUNT} to card {CARD} on {DATE}. "
    "Cardholder: {NAME_EN}. If this was not you, call {LANDLINE} (ext. {N}).\n{COMPANY}",
    "Account holder: {NAME_PY}\nAccount number: {CARD}\nBranch: {CITY}\nReference {DECOY_ORDER}, "
    "amount ${AMOUNT}. Version {DECOY_VERSION} of the statement format.",
    "转账凭证：付款人{NAME_ZH}，收款人{NAME_ZH}，收款账号{CARD}，金额{AMOUNT}元，"
    "流水号{DECOY_ORDER}，经办人：{NAME_ZH}。",
    "To: {NAME_EN}\nRe: loan application {DECOY_ORDER}\nPlease send a copy of your passport "
    "({PASSPORT}) and ID to {EMAIL}. Our office: {LANDLINE}.",
    "【{COMPANY_ZH}】{NAME_ZH}您好，您尾号{N4}的储蓄卡消费{AMOUNT}元。客户经理{NAME_ZH}"
    "（{MOBILE}）为您服务。",
)

DELIVERY = (
    "快递单\n收件人：{NAME_ZH}\n电话：{MOBILE}\n地址：{CITY}{STREET}{N}号\n寄件人：{NAME_ZH} "
    "{LANDLINE}\n运单号：{DECOY_TRACKING}\n物品：{DECOY_PRODUCT}",
    "收货人：{NAME_ZH}，{MOBILE}，{CITY}{STREET}{N}弄{N}室。订单号{DECOY_ORDER}，实付{AMOUNT}元。",
    "Ship to: {NAME_EN}\n{N} {EN_STREET}, Springfield\nPhone: {MOBILE}\nOrder {DECOY_ORDER}, "
    "item {DECOY_PRODUCT}, total ${AMOUNT}.",
    "您好，{NAME_ZH}，您的包裹{DECOY_TRACKING}已到达{CITY}{STREET}驿站，请凭取件码{N4}领取。"
    "快递员{SUR_ZH}师傅电话{MOBILE}。",
    "配送单：联系人 {NAME_ZH}；联系电话 {LANDLINE}；送货地址 {CITY}{STREET}{N}号；"
    "商品 {DECOY_PRODUCT}；备注：周一至周五送货。",
    "Attn: {NAME_EN}\nYour parcel {DECOY_TRACKING} was delivered on {DATE} at {TIME}. "
    "Questions: {EMAIL}.",
)

SUPPORT = (
    "用户：你好，我叫{NAME_ZH}，订单{DECOY_ORDER}一直没发货。\n客服：您好{NAME_ZH}，"
    "请提供下单手机号。\n用户：{MOBILE}\n客服：已加急，预计{DATE}送达。",
    "Customer {NAME_EN} wrote: my login fails after upgrading to version {DECOY_VERSION}. "
    "Agent: please email {EMAIL} with the log. Customer: ok, my number is {MOBILE}.",
    "客服记录：客户{NAME_ZH}来电（{LANDLINE}）反映App {DECOY_VERSION}版本闪退，"
    "已转技术{NAME_ZH}处理。",
    "User: Hi, this is {NAME_PY}. I can't reach your office at {LANDLINE}.\n"
    "Agent: Sorry {NAME_PY}, please try {MOBILE}.",
    "Name: {NAME_EN}\nEmail: {EMAIL}\nPhone: {LANDLINE}\nIssue: refund for order {DECOY_ORDER} "
    "(${AMOUNT}) not received.",
    "会员{NAME_ZH}您好，您反馈的问题已记录。处理人：{NAME_ZH}；回访电话{LANDLINE}；"
    "服务时间周一至周五9:00-18:00。",
    "Hi {NAME_EN}, thanks for contacting {COMPANY}. Your ticket {DECOY_ORDER} was assigned to "
    "{NAME_EN}. See section {DECOY_SECTION} of the terms.",
    "我是{NAME_ZH}，上周在{STREET}门店买的{DECOY_PRODUCT}坏了，麻烦{SUR_ZH}经理回个电话："
    "{MOBILE}。",
    "From: {NAME_EN} <{EMAIL}>\nSubject: password reset\nI no longer have access to the old "
    "phone. New number {MOBILE}. Thanks, {NAME_EN}",
    "Customer: {NAME_ZH}\nAgent notes: caller asked about invoice {DECOY_ORDER}; "
    "callback on {LANDLINE}.",
)

INSURANCE = (
    "投保单\n投保人：{NAME_ZH}  证件号码：{ID}\n被保险人：{NAME_ZH}  与投保人关系：子女\n"
    "受益人：{NAME_ZH}\n联系电话：{MOBILE}  电子邮箱：{EMAIL}\n保费：{AMOUNT}元",
    "理赔申请：被保险人{NAME_ZH}（证件号{ID}）于{DATE}就诊，申请金额{AMOUNT}元，收款账户{CARD}，"
    "户名{NAME_ZH}。条款第{DECOY_SECTION}条适用。",
    "Policyholder: {NAME_EN}\nInsured: {NAME_EN}\nPassport No.: {PASSPORT}\nContact: {LANDLINE}\n"
    "Per clause {DECOY_SECTION}, the claim is payable within {N} days.",
    "境外旅行险：被保险人{NAME_ZH}，护照号码{PASSPORT}，出行日期{DATE}，紧急联系人{NAME_ZH}"
    "（{MOBILE}）。",
    "保单变更：投保人{NAME_ZH}申请将联系电话改为{LANDLINE}，业务员{NAME_ZH}，保单号{DECOY_ORDER}。",
    "Beneficiary: {NAME_PY}; relationship: spouse; travel document {PASSPORT}; phone {LANDLINE}.",
)

HR = (
    "录用通知书\n{NAME_ZH}同志：\n经研究，决定录用您为{COMPANY_ZH}软件工程师，月薪{AMOUNT}元，"
    "请于{DATE}报到。联系人：{NAME_ZH}，电话{LANDLINE}。",
    "Dear {NAME_EN},\nWe are pleased to offer you the position of Analyst at {COMPANY}. "
    "Your manager will be {NAME_EN}. Please reply to {EMAIL}.\nRegards,\n{NAME_EN}",
    "员工信息登记表\n姓名：{NAME_ZH}\n身份证号：{ID}\n工资卡：{CARD}\n紧急联系人：{NAME_ZH} "
    "{MOBILE}\n入职日期：{DATE}",
    "Employee: {NAME_PY}\nEmployee ID: {DECOY_ORDER}\nResident ID: {ID}\nPassport: {PASSPORT}\nWork phone: {LANDLINE}\n"
    "Manager: {NAME_EN}",
    "离职证明：兹证明{NAME_ZH}（身份证号{ID}）自{DATE}起在我司任职，现已办理离职手续。"
    "人事部{SUR_ZH}经理，电话{LANDLINE}。",
    "Reference letter: {NAME_EN} worked with us from {DATE}. Contact Mr. {LAST_EN} at "
    "{LANDLINE} for details. Section {DECOY_SECTION} of the handbook applies.",
)

CODE = (
    'DATABASE_URL = "{URL_CRED}"\n# pinned to version {DECOY_VERSION}\nhost = "{IP}"\n'
    "timeout = {N}0",
    "{DATE} {TIME} INFO login ok user=u{N4} ip={IP} agent=Chrome/{DECOY_VERSION} "
    "build {DECOY_VERSION}",
    "git remote add origin {URL_CRED}\ngit push origin main  # release v{DECOY_VERSION}",
    "[{DATE} {TIME}] WARN upstream {IP}:{N}0{N} refused; retry {N}/5 (see § {DECOY_SECTION})",
    "curl -u admin {URL_PLAIN} && wget {URL_CRED}\nchecksum ok, firmware {DECOY_VERSION}",
    "ERROR connect {IP6} failed: timeout after {N}s; fallback {IP}; version {DECOY_VERSION}",
    "redis_url: {URL_CRED}\nmetrics_addr: 0.0.0.0:9100\nlog_level: debug\nschema: {DECOY_SECTION}",
    "pip install pkg=={DECOY_VERSION}  # see {URL_PLAIN}\nexport PROXY={URL_CRED}",
)

DECOYS = (
    "门诊时间为周一至周五8:00-17:30，节假日停诊。地址：{CITY}{STREET}{N}号，靠近王府井。",
    "{COMPANY} released version {DECOY_VERSION} on {DATE}; see section {DECOY_SECTION} for the "
    "changelog. Price: ${AMOUNT}.",
    "张家界国家森林公园门票{AMOUNT}元，周一至周日开放，订单号{DECOY_ORDER}。",
    "A Dr Pepper costs ${AMOUNT} at the {EN_STREET} store; order {DECOY_ORDER}, item {DECOY_PRODUCT}.",
    "依据第{DECOY_SECTION}条规定，产品{DECOY_PRODUCT}的保修期为{N}年，发票号{DECOY_ORDER}。",
    "Dear Customer, your order {DECOY_ORDER} of {DECOY_PRODUCT} ships on {DATE}. Total ${AMOUNT}.",
    "黄河路与长江路交叉口的{COMPANY_ZH}，营业时间周一至周五，客服邮箱见官网。版本{DECOY_VERSION}。",
    "Washington Street and Lincoln Avenue are closed on {DATE}; detour via {EN_STREET}.",
    "马上就到！{DATE}高新区金融街活动，周一至周五每天{TIME}开始，门票{AMOUNT}元。",
    "Specs: {DECOY_PRODUCT}, firmware {DECOY_VERSION}, released {DATE}, see § {DECOY_SECTION}.",
)

DOMAINS: dict[str, tuple[str, ...]] = {
    "medical": MEDICAL,
    "bank": BANK,
    "delivery": DELIVERY,
    "support": SUPPORT,
    "insurance": INSURANCE,
    "hr": HR,
    "code": CODE,
    "decoy": DECOYS,
}
