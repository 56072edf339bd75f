"""The evaluation generator's own vocabularies, written by hand for it (never shared with the detector).

Every list is split by position into a *dev* half (even positions), looked at while tuning the
detector, and a *test* half (odd positions), which only the scored test run uses: a detector that
learned the dev names and wordings by heart gains nothing on the test half.
"""

from __future__ import annotations

ZH_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武"
    "戴莫孔汤傅柳欧葛聂郁岳柯殷齐庞倪洪童包祝鲁穆申耿卜温冉蒲甘屈靳焦鲍芦季车滕祁牛乔尚单翟伍庄"
)
ZH_COMPOUND = (
    "欧阳 司马 上官 诸葛 东方 皇甫 令狐 慕容 司徒 夏侯 尉迟 公孙 长孙 宇文 轩辕 端木 独孤 南宫 西门 "
    "呼延 闻人 澹台 公冶 太史 申屠 赫连 钟离 百里 东郭 左丘"
).split()
ZH_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀兰霞平刚桂英华建国红梅玉萍鹏飞辉宇鑫波斌宁浩凯婷雪琳晶瑶颖"
    "倩欣怡佳慧梦晨阳昊然轩涵萱泽睿博文彬鸿志坤海峰亮龙松林森毅诚俊嘉琪璐蕾薇莹荣瑞祥庆春冬秋兵"
    "锋凡帆航晓悦雅婉月蓉燕琴珊翠霖岚逸弘之远信忠义仁德良善正晖楠思雨若菲凌薇"
)
EN_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard "
    "Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty "
    "Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua "
    "Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald "
    "Rebecca Edward Sharon Jason Laura Jeffrey Cynthia Ryan Kathleen Jacob Amy Gary Angela Nicholas "
    "Shirley Eric Anna Jonathan Brenda Stephen Pamela Larry Emma Justin Nicole Scott Helen Brandon "
    "Samantha Benjamin Katherine Samuel Christine Gregory Debra Alexander Rachel Frank Carolyn "
    "Patrick Janet Raymond Catherine Jack Maria Dennis Heather Jerry Diane Tyler Ruth Aaron Julie "
    "Henry Olivia Douglas Joyce Peter Virginia Adam Victoria Nathan Kelly Zachary Lauren Walter "
    "Christina Kyle Joan Harold Evelyn Carl Judith Arthur Megan Lawrence Andrea Roger Cheryl"
).split()
EN_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips "
    "Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers "
    "Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson "
    "Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders "
    "Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler "
    "Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton "
    "Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina "
    "Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods O'Connor"
).split()
# (surname, given) in pinyin; given names of one or two syllables.
PINYIN_SURNAMES = (
    "Zhang Wang Li Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Gao Lin Luo Zheng Liang "
    "Xie Song Tang Han Feng Deng Cao Peng Zeng Xiao Tian Dong Yuan Pan Jiang Cai Du Ye Cheng Su Wei "
    "Lu Ding Ren Shen Yao Cui Zhong Tan Fan Jin Shi Liao Jia Xia Fang Zou Meng Xiong Qin Qiu Yin "
    "Xue Duan Lei Hou Long Tao Li Ouyang Situ Shangguan Zhuge"
).split()
PINYIN_GIVEN = (
    "Wei Fang Na Min Jing Li Qiang Lei Jun Yang Yong Yan Jie Tao Ming Chao Xiulan Xia Ping Gang "
    "Guiying Hua Jianguo Hongmei Yuping Pengfei Hui Yu Xin Bo Bin Ning Hao Kai Ting Xue Lin Yao Ying "
    "Qian Yi Jia Huiling Chen Mengyao Zixuan Haoran Yuxuan Zhiwei Jianhua Xiaoming Xiaohong Lihua "
    "Shuang Dan Lu Yun Qing Feng Tingting Jiahui Zihan Ruoxi Yichen Xinyi Siyu Wenjie Junjie"
).split()
STREETS_ZH = (
    "朝阳路 人民路 解放路 中山路 建设路 和平路 长江路 黄河路 文化路 新华路 胜利路 青年路 学院路 "
    "光明路 平安大街 金融街 王府井大街 长安街 南京路 淮海路"
).split()
CITIES_ZH = (
    "北京市 上海市 广州市 深圳市 杭州市 成都市 武汉市 南京市 西安市 重庆市 天津市 苏州市".split()
)
COMPANIES = (
    "Acme Corp|Globex Ltd|Initech|Umbrella Health|Northwind Traders|Contoso Bank|Fabrikam|"
    "Tailspin Toys|Wide World Importers|Blue Yonder Airlines|Litware Inc|Proseware"
).split("|")
COMPANIES_ZH = (
    "华信科技有限公司 远航物流 安康保险股份有限公司 恒通银行 明德医院 金桥电子 顺达快递 "
    "东方明珠文化传媒 长城软件 新世纪人力资源"
).split()
DOMAINS = (
    "example.com mail.example.org qq.com 163.com 126.com gmail.com outlook.com hospital.example.cn "
    "corp.example.net bank.example.com.cn sina.com yahoo.com"
).split()
HOSTS = (
    "db.internal db-prod-01.corp.example.net cache.local git.example.com registry.example.org "
    "10.0.3.15 ftp.example.cn mq.internal:5672 search.example.com:9200 s3.example.io"
).split()
# Product, part and batch codes: passport- and card-shaped strings that are not PII ({n}: digits).
PRODUCTS = (
    "SKU-{n5}",
    "型号KX-{n3}",
    "货号HZ{n7}",
    "P/N 74HC{n3}D",
    "Model A{n4}",
    "批号 {n8}B",
    "产品编号 PD-{n5}",
    "Part No. X{n7}",
    "型号 E{n8}",
    "SN AB{n7}",
    "货号 G{n8}",
    "item KB{n7}",
)
