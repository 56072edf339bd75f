"""Name tables for the PERSON recognizers, written by hand for this project (about 20 KB).

Sources: the common single-character surnames (the Baijiaxing list and the surname frequency
tables of the 2020 census, from memory, minus characters that are mostly function words), the
classical compound surnames, characters frequent in given names, the most frequent US census
given and family names, and the Hanyu Pinyin syllable table. None of it is shared with the
evaluation generator (tests/data/pii_eval), which has lists of its own.
"""

from __future__ import annotations

# Single-character surnames. Left out on purpose: characters that are far more often function words
# or parts of common words than surnames (于 和 向 时 常 将 也 之 以 从 把 被 到 都 就 其 所 仍 能 第 ...).
ZH_SINGLE_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严"
    "覃武戴莫孔汤柳欧葛聂郁岳柯殷齐庞倪洪童包祝鲁穆申耿卜温冉蒲甘屈靳焦鲍芦季车滕祁牛乔尚单翟伍庄"
    "施俞章苗蓝符关游舒华宁柴凌骆饶边景鞠瞿阮裴商詹盛谷麦巫房易佟艾刁窦霍诸葛卫晏"
    "褚蒋韩杨秦尤许姚邵湛汪祁毛禹狄米贝明臧计伏成戴谈宋茅庞熊纪舒屈项祝董梁杜阮蓝闵席季麻强贾路娄危"
    "江童颜郭梅盛林刁钟徐邱骆高夏蔡田樊胡凌霍虞万支柯昝管卢莫经房裘缪干解应宗丁宣贲邓郁单杭洪包诸左石"
    "崔吉钮龚程嵇邢滑裴陆荣翁荀羊於惠甄麴家封芮羿储靳汲邴糜松井段富巫乌焦巴弓牧隗山谷车侯宓蓬全郗班"
    "仰秋仲伊宫宁仇栾暴甘钭厉戎祖武符刘景詹束龙叶幸司韶郜黎蓟薄印宿白怀蒲邰从鄂索咸籍赖卓蔺屠蒙池乔"
    "阴郁胥能苍双闻莘党翟谭贡劳逄姬申扶堵冉宰郦雍却璩桑桂濮牛寿通边扈燕冀郏浦尚农温别庄晏柴瞿阎充慕"
    "连茹习宦艾鱼容向古易慎戈廖庾终暨居衡步都耿满弘匡国文寇广禄阙东欧殳沃利蔚越夔隆师巩厍聂晁勾敖融"
    "冷訾辛阚那简饶空曾毋沙乜养鞠须丰巢关蒯相查后荆红游竺权逯盖益桓公岑"
)
ZH_COMPOUND_SURNAMES = (
    "欧阳 司马 上官 诸葛 东方 皇甫 令狐 慕容 司徒 夏侯 尉迟 公孙 长孙 宇文 轩辕 端木 独孤 南宫 西门 "
    "呼延 闻人 澹台 公冶 太史 申屠 赫连 钟离 百里 东郭 左丘 万俟 司空 仲孙 濮阳 淳于 单于 太叔 公羊 "
    "乐正 宗政 拓跋 羊舌 微生 梁丘 公西 巫马 漆雕 壤驷 谷梁 段干 子车 颛孙 第五 鲜于 闾丘 亓官 司寇 "
    "公良 南门 呼衍 归海 东门 公伯 即墨 达奚 褚师 夹谷 宰父 公户 公玉 公仪 梁丘 公仲 公上 公门 "
    "公山 公坚 左人 西乡 东里 北宫 王孙"
).split()
# Characters common in given names (not exhaustive: a name whose second given character is not
# here is still found, one character shorter).
ZH_GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀兰霞平刚桂英华建国红梅玉萍鹏飞辉宇鑫波斌宁浩凯婷雪琳晶瑶颖倩"
    "欣怡佳慧梦晨阳昊然轩涵萱泽睿博文彬鸿志坤海峰亮龙松林森毅诚俊嘉琪璐蕾薇莹荣瑞祥庆春冬秋兵锋凡帆"
    "航晓悦雅婉月蓉燕琴珊翠霖岚逸弘之远信忠义仁德良善正晖楠思雨若菲凌云霄坚兴旭东升昌盛福禄寿喜乐"
    "安康永长成立新光耀宏伦振宗家贵金银宝珍珠凤鸣鹤麟虎豹彪雄武威卫保全健生发富利启航翔宸铭皓晟煜"
    "烨炜焱琦瑾瑜璇瑶珂琳玮珏璟蕊芝芬芸茜莉荷菊萍蓓蔓蕾薇丹彤红紫青碧蓝翠妍婕媛娟娇姝婧嫣嫦婵娅娴"
    "婷妮姗姣妙妤淑惠慧敏捷睿智聪颖灵秀美丽雅静淑贤良恭俭让温柔顺和谐宁静致远清源澄湛浩瀚泓涛波澜"
    "洪江河湖海溪泉淼森林树桐梧柏松杉枫桦楠榕柳杨桃李梅兰竹菊莲荷萱蕙若芷茗茜苗蓉英华荣茂蔚葳"
    "子一二三四五六七八九十小大天地日月星辰风云雷电山川石岩峰岭丘陵玉金银铜铁钢锦绣缘源元圆媛"
    "立伟力勤俭朴实真诚信义仁德厚道明理达通顺畅达远航帆舟泊港湾津渡沛涵润泽洁净晶莹亮晖辉煌灿烂"
    "嘉佳家加迦珈伽茜倩蒨艺逸毅奕弈羿熠亦怡宜仪依伊懿一以易益谊翊轶溢忆"
    "俊骏峻浚竣郡君军均钧筠韵昀芸耘允运蕴韫"
    "子梓紫姿滋孜资"
    "豪浩皓昊灏好郝号颢"
    "宇羽雨语玉煜钰毓裕昱誉与予屿禹瑜渝榆愉"
    "鹏彭朋蓬芃澎"
    "鑫欣馨新昕心芯忻莘歆"
    "晨辰宸琛臣尘忱"
    "丰冰雯露娣娥峥嵘崇巍沁沐淇湘潇澜炎烁焕熙燊爽玲珍琼瑛璋瑗甜盈祯禧穗筱纯绮维缨羲翰聪舒芊芙"
    "苒茵荔莎莺萌萧薰虹衍谦谨豫贞贤铮锐隽雁霏靖韬韶颂飒馥驰骁鲲鸥鹃"
)
# Title-case words a capitalized pair must not end in to be a standalone English name.
EN_NOT_FAMILY = frozenset(
    "Street St Road Rd Avenue Ave Lane Ln Boulevard Blvd Drive Dr Way Court Ct Place Pl Square Sq "
    "Park Bridge Station Center Centre Tower Building House Hotel Hospital Clinic School "
    "College University Institute Museum Library Church Bank Trust Group Inc Ltd LLC Corp Company "
    "Co Foundation Fund Airlines Airways Motors Health Pharmacy Store Shop Market Mall Street "
    "County City Town Village Island Islands Lake River Mountain Mountains Valley Beach Bay Harbor "
    "Port Point Heights Hills Gardens Garden Estate Estates Apartments Day Month Year Week Monday "
    "Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July "
    "August September October November December Team Support Service Services Office Department "
    "Pepper Cola Coke Fries Burger Card Account Online Pay Plus Pro Max Mini Edition Version Update "
    "Award Prize Act Law Bill Agreement Terms Policy Avenue Harbour Falls Memorial Peak Stadium "
    "Arena Theatre Theater Airport Terminal Pier Wharf Quay Cathedral Palace Castle Fort "
    "Snapple Foods Brands Holdings Partners Capital Ventures Labs Systems Technologies".split()
)
# First words that make a label ("Dear", "Customer") not introduce a name.
EN_NOT_NAME = frozenset(
    "Sir Sirs Madam Madame Sir/Madam Customer Customers Client Clients Valued Member Members Team "
    "All Everyone Colleague Colleagues Friend Friends Partner Partners Service Support Care Hiring "
    "Manager User Users Applicant Candidate Guest Guests Patient Patients Parent Parents Student "
    "Students Doctor Dr Mr Mrs Ms Miss Prof Reader Readers Subscriber Subscribers Owner Holder "
    "Name Number No ID Account Card Phone Email Address The This That These Those Our Your My His "
    "Her Their We You They It Please Thank Thanks Hello Hi Dear Sincerely Regards Best Kind Warm "
    "Yours Re Fwd Subject Date From To Cc Order Ticket Invoice Reference Ref Policy Claim Unknown "
    "Anonymous Admin Administrator Staff Agent Officer Team Department Office Sales Billing "
    "Accounts Hr Human Resources Not Yes No Ok Okay N A NA None Null Test Sample Example Other "
    "Clean Muscle Potato Proper Freeze Bubble Sparkle Coffee Fix Right Wrong Big Nice".split()
)
EN_GIVEN_NAMES = frozenset(
    (
        "James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel "
        "Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy "
        "Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin "
        "Scott Brandon Benjamin Samuel Gregory Alexander Frank Patrick Raymond Jack Dennis Jerry "
        "Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle Ethan Walter Noah Jeremy "
        "Christian Keith Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan Jesse "
        "Jordan Bryan Billy Joe Bruce Gabriel Logan Albert Willie Alan Juan Wayne Elijah Randy Roy "
        "Vincent Ralph Eugene Russell Bobby Mason Philip Louis Harry Howard Fred Martin Craig "
        "Victor Leonard Ernest Stanley Shawn Travis Curtis Norman Allen Glenn Marcus Oliver Lucas "
        "Liam Owen Luke Isaac Hunter Connor Caleb Evan Ian Colin Neil Simon Tom Tim Tony Mike Dave "
        "Steve Chris Matt Dan Ben Sam Nick Alex Max Jake Josh Rick Ron Ted Ken Jim Bob Bill Greg "
        "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty "
        "Margaret Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah "
        "Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma "
        "Nicole Helen Samantha Katherine Christine Debra Rachel Carolyn Janet Catherine Maria "
        "Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren Christina Joan "
        "Evelyn Judith Megan Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara Madison "
        "Frances Kathryn Janice Jean Abigail Alice Judy Sophia Grace Denise Amber Doris Marilyn "
        "Danielle Beverly Isabella Theresa Diana Natalie Brittany Charlotte Marie Kayla Alexis Lori "
        "Ava Mia Chloe Ella Lily Zoe Claire Lucy Sophie Kate Katie Jane Jenny Amelia Harper "
        "Abby Ellen Eleanor Rose Ruby Nora Leah Julia Jill Joanna Paula Wendy Tina Tracy Susie "
        "Lynn Irene Vivian Fiona Rita Eva Ivy Iris Stella Hazel Violet Audrey Bella Sally Molly"
    ).split()
)
EN_FAMILY_NAMES = frozenset(
    (
        "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
        "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White "
        "Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres "
        "Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts "
        "Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales "
        "Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos "
        "Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes "
        "Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry "
        "Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons "
        "Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West "
        "Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro "
        "Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry "
        "Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez "
        "Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd "
        "Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols "
        "Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce "
        "Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong "
        "Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman Johnston "
        "Matthews Pena Richards Contreras Willis Carpenter Lawrence Sandoval Guerrero George "
        "Chapman Rios Estrada Ortega Watkins Greene Nunez Wheeler Valdez Harper Burke Larson "
        "Santiago Maldonado Morrison Franklin Carlson Austin Dominguez Carr Lawson Jacobs Obrien "
        "Lynch Singh Vega Bishop Montgomery Oliver Jensen Harvey Williamson Gilbert Dean Sims "
        "Espinoza Howell Li Wang Zhang Liu Chen Yang Huang Zhao Wu Zhou O'Brien O'Connor O'Neill "
        "Walsh Byrne Doyle Kelly Quinn Murphy Brennan Clarke Wood Turner Hughes Edwards Green "
        "Thompson Wright Walker Robinson Lewis Hill Cook Harris Clarke Jackson Morris Baker "
        "Williamson Foster Fletcher Barker Chambers Lloyd Morgan Price Owen Jenkins Pugh Rees"
    ).split()
)
# Pinyin surnames (title case) that may start or end a romanized Chinese name.
PINYIN_SURNAMES = frozenset(
    (
        "Zhang Wang Li Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Gao Lin Luo Zheng "
        "Liang Xie Song Tang Han Feng Deng Cao Peng Zeng Xiao Tian Dong Yuan Pan Jiang Cai Du Ye "
        "Cheng Su Wei Lu Ding Ren Shen Yao Cui Zhong Tan Fan Jin Shi Liao Jia Xia Fang Zou Meng "
        "Xiong Qin Qiu Yin Xue Duan Lei Hou Long Tao Lyu Lv Bai Kong Wen Qian Mao Hao Gong Shao "
        "Wan Yan Qin Gu Niu Kang Chang Shang Bao Dai Yu Fu Mo Nie Mei Geng Chai Ke Kuang Ji Cen Tong "
        "Ouyang Situ Shangguan Zhuge Sima Dongfang Huangfu Linghu Murong Xiahou Gongsun Zhangsun "
        "Yuwen Duanmu Nangong Ximen Hua Qi Qu Rao Ruan Sha Tu Xiang Yi Zhan Zhuang Pang Ni Hong"
    ).split()
)
# Every Hanyu Pinyin syllable, toneless (ü written v or u): a given name in pinyin is one to
# three of these run together ("Xiaoming", "Jianguo").
PINYIN_SYLLABLES = frozenset(
    (
        "a ai an ang ao ba bai ban bang bao bei ben beng bi bian biao bie bin bing bo bu ca cai can "
        "cang cao ce cen ceng cha chai chan chang chao che chen cheng chi chong chou chu chuai "
        "chuan chuang chui chun chuo ci cong cou cu cuan cui cun cuo da dai dan dang dao de dei "
        "den deng di dian diao die ding diu dong dou du duan dui dun duo e ei en eng er fa fan fang "
        "fei fen feng fo fou fu ga gai gan gang gao ge gei gen geng gong gou gu gua guai guan guang "
        "gui gun guo ha hai han hang hao he hei hen heng hong hou hu hua huai huan huang hui hun "
        "huo ji jia jian jiang jiao jie jin jing jiong jiu ju juan jue jun ka kai kan kang kao ke "
        "ken keng kong kou ku kua kuai kuan kuang kui kun kuo la lai lan lang lao le lei leng li "
        "lia lian liang liao lie lin ling liu long lou lu luan lun luo lv lve lü ma mai man mang "
        "mao me mei men meng mi mian miao mie min ming miu mo mou mu na nai nan nang nao ne nei "
        "nen neng ni nian niang niao nie nin ning niu nong nou nu nuan nuo nv nve o ou pa pai pan "
        "pang pao pei pen peng pi pian piao pie pin ping po pou pu qi qia qian qiang qiao qie qin "
        "qing qiong qiu qu quan que qun ran rang rao re ren reng ri rong rou ru ruan rui run ruo "
        "sa sai san sang sao se sen seng sha shai shan shang shao she shei shen sheng shi shou shu "
        "shua shuai shuan shuang shui shun shuo si song sou su suan sui sun suo ta tai tan tang tao "
        "te teng ti tian tiao tie ting tong tou tu tuan tui tun tuo wa wai wan wang wei wen weng "
        "wo wu xi xia xian xiang xiao xie xin xing xiong xiu xu xuan xue xun ya yan yang yao ye yi "
        "yin ying yo yong you yu yuan yue yun za zai zan zang zao ze zei zen zeng zha zhai zhan "
        "zhang zhao zhe zhei zhen zheng zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo "
        "zi zong zou zu zuan zui zun zuo"
    ).split()
)
# Capitalized pairs of pinyin-looking words that are not names.
PINYIN_NOT_NAMES = frozenset(
    "Hong Kong|Yin Yang|Tai Chi|Feng Shui|Ping Pong|Ding Dong|Kung Fu|Dim Sum|Bok Choy|Wu Tang|"
    "Chow Mein|Mao Tai|Li Ning|Ma Ma|Bao Bao|Xiao Mi|Hai Di|Da Tang|Shang Hai|Bei Jing|Yi Jing".split(
        "|"
    )
)
# English words that are also pinyin syllables and start many sentences: not a given name alone.
PINYIN_ENGLISH_WORDS = frozenset(
    "A An He She Me We Be Ban Pan Fan Man Men Ten Hen Den Pen Tan Ran Sun Gang Hang Bang Long "
    "Song Ding Ping Ring Sing Wing King Bin Pin Tin Din Shun Run Gun Bun Fun Nun Can Die Tie Lie "
    "Pie So No Go To Do Hi Yo Ma Pa Ha Ya Ping Pong Zen Chin Shin Sang Rang Wan Ran".split()
)

# Words that start with a surname and that jieba's dictionary tags as a name, or that it cuts out
# as one: places, brands and common words. Never a person without a label.
ZH_NOT_NAMES = frozenset(
    """
    黄金周 高明 张开 王府井 张家界 周口 马鞍山 中山 黄山 华山 泰山 庐山 衡山 嵩山 峨眉 金山 钟山 凤凰 岳麓
    武当 武夷 黄浦 徐汇 闵行 杨浦 长宁 静安 宝山 嘉定 金华 丽水 温州 常州 徐州 苏州 杭州 梅州
    惠州 贺州 雷州 连云港 石家庄 秦皇岛 邢台 邯郸 唐山 保定 包头 鄂尔多斯 乌鲁木齐 武汉 宁波
    宁德 温岭 金门 白云 白银 白山 蓝田 华为 李宁 康师傅 周大福 周黑鸭 王老吉 老干妈 马应龙 张小泉
    谭木匠 陈克明 杜蕾斯 范思哲 蒙牛 伊利 石榴 金鱼 金毛 马克 龙井 方正 宋体 黄金 白金 江湖 林木
    明天 明年 明白 明星 明确 明显 成功 成立 成都 万达 万科 万一 万元 钱包 钱塘 江苏 江西 江北 江南
    江东 江边 田园 田野 车辆 车间 车主 洪水 宁夏 宁静 高速 高度 高温 高级 高中 高考 高兴 高手
    黄色 黄豆 白色 白天 白领 方法 方面 方便 方向 方案 马上 马路 石头 石油 文化 文件 文章 史上
    安全 安排 安装 安静 管理 管道 金额 金融 金属 林业 罗马 毛巾 毛病 牛奶 牛肉 龙头 凤梨
    老子 孙子 包子 饺子 武器 武术 关于 关系 关键 关注 华人 华侨
    严重 严格 应该 叶子 叶片 冯氏 宋朝 唐朝 汉朝 明朝 秦朝 周朝 魏晋 项目 解决 计划
    曹操
    小王子 老爷子 小伙子 大王 大人 老人 老大 老二 老三 老爷 老公 老婆 老乡 老家 大家 小姐 大姐
    小李飞刀 阿里 阿姨 阿婆 阿公 阿爸 阿妈 阿伯 老板 小说 大学 小学 老师 大夫 小时
    """.split()
)

# More characters of given names, for names in running text (the table above was written for
# labeled names): a segmenter's unknown word made of these is likely a name.
ZH_GIVEN_CHARS_MORE = (
    "满白诗曦祺菁鸾腾跃栋梁柱樱杏旋胜欢笑朗昭晴暖夏霜浪潮汐澈滢珑孝宽素爱恩佑佐辅弼护守壮琰煊晗"
    "暄晔珩瑄镇垚犇骥邦民修远曼棋姬冲茹妃琬珺沫渊煦炫遥迪迈杭功业中南西北向进援朝赤橙黄绿墨玄影如可小大二三四五六一丁乙"
)

# Given names beyond the US census list: European, Nordic, Arabic, South Asian, African, Latin
# American and common English short forms, for greetings, sign-offs and "Last, First".
EN_GIVEN_NAMES_MORE = frozenset(
    (
        "Sofia Sophia Sophie Olivia Emma Ava Isabella Mia Amelia Harper Evelyn Abigail Ella "
        "Chloe Grace Lily Zoe Nora Hannah Leah Aria Layla Riley Zoey Aubrey Ellie Stella Lucy "
        "Claire Violet Aurora Hazel Alice Ruby Eva Ivy Clara Freya Astrid Ingrid Sigrid Greta Elsa "
        "Linnea Maja Saga Ebba Alma Lina Nina Anja Katja Petra Lena Jana Eva Hanna Johanna Frida "
        "Lars Anders Nils Erik Henrik Magnus Sven Olaf Bjorn Leif Mats Jonas Mikael Johan Karl "
        "Emil Oskar Axel Hugo Felix Elias Viktor Gustav Jens Niels Søren Rasmus Mikkel Sander "
        "Pierre Jean Jacques Louis Antoine Nicolas Julien Mathieu Thierry Philippe Francois Marie "
        "Camille Manon Chloé Léa Élodie Amélie Céline Margaux Inès Zoé Hélène Sylvie Nathalie "
        "Hans Jürgen Klaus Wolfgang Dieter Uwe Stefan Tobias Lukas Jonas Florian Matthias Sebastian "
        "Katrin Ursula Monika Sabine Birgit Anke Heike Julia Laura Lea Leonie Marco Luca Matteo "
        "Giulia Francesca Chiara Alessandro Giovanni Giuseppe Lorenzo Andrea Paolo Stefano Marta "
        "Pablo Javier Alejandro Carlos Diego Miguel Sergio Rafael Fernando Lucia Carmen Pilar "
        "Isabel Elena Paula Valentina Camila Mariana Gabriela Daniela Fernanda Catalina Ximena "
        "João Joao Tiago Rui Pedro Ana Beatriz Inês Mateus Gabriel Rodrigo Thiago Bruno Leonardo "
        "Ahmed Ahmad Mohammed Mohammad Muhammad Mohamed Omar Ali Hassan Hussein Yusuf Youssef "
        "Ibrahim Khalid Karim Tariq Rashid Samir Nabil Walid Fatima Aisha Layla Leila Mariam Maryam "
        "Noor Nour Zainab Yasmin Yasmine Amira Salma Hana Huda Rania Dina Reem Omar Imran Farah "
        "Priya Ananya Aditi Kavya Divya Pooja Neha Sneha Anjali Deepika Lakshmi Meera Nisha "
        "Rahul Arjun Rohan Vikram Amit Sanjay Rajesh Suresh Ravi Anil Sunil Vijay Arun Karthik "
        "Aarav Vivek Nikhil Ashish Manish Deepak Rakesh Ramesh Ganesh Prakash Siddharth Aditya "
        "Kwame Kofi Ama Abena Chinedu Ngozi Oluwaseun Tunde Femi Amara Zuri Jabari Thabo Sipho "
        "Hiroshi Takashi Kenji Yuki Haruto Yuto Sota Ren Sakura Yui Hina Aoi Akira Kaito Takeshi "
        "Naomi Keiko Yoko Emiko Mei Minh Linh Huong Lan Anh Thanh Tuan Duc Quang Hieu Trang "
        "Ivan Dmitri Dmitry Sergei Alexei Mikhail Andrei Nikolai Pavel Olga Natasha Tatiana "
        "Svetlana Irina Anastasia Ekaterina Katarzyna Piotr Tomasz Krzysztof Agnieszka Magdalena "
        "Liz Beth Kate Katie Jess Becky Abby Maggie Meg Jenny Annie Ellie Millie Molly Rosie "
        "Jamie Charlie Frankie Freddie Alfie Archie Ollie Theo Leo Finn Rory Callum Declan "
        "Aidan Cian Niamh Siobhan Aoife Ciara Saoirse Eoin Seamus Padraig Fiona Moira Isla Ailsa "
        "Margaret Anne Ann Helen Helena Catherine Katherine Kathryn Caroline Charlotte Victoria "
        "Eleanor Louise Rebecca Rachel Sarah Emily Jessica Jennifer Amanda Melissa Michelle "
        "Stephanie Nicole Elizabeth Mary Patricia Linda Barbara Susan Dorothy Lisa Nancy Karen "
        "Betty Sandra Donna Carol Ruth Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna "
        "Brenda Pamela Emma Nicole Samantha Christine Debra Janet Rachel Carolyn Virginia Maria "
        "Heather Diane Julie Joyce Victoria Kelly Christina Lauren Joan Evelyn Judith Megan "
        "Cheryl Andrea Hannah Martha Jacqueline Frances Gloria Ann Teresa Kathryn Sara Janice "
        "Jean Alice Madison Doris Abigail Julia Judy Grace Denise Amber Marilyn Beverly Danielle "
        "Theresa Sophia Marie Diana Brittany Natalie Isabella Charlotte Rose Alexis Kayla Wendy "
        "Jenna Vanessa Tiffany Erin Kristen Monica Tina Vivian Yvonne Irene Eileen Wei Ming"
    ).split()
)
# Family names beyond the census list, for "J. R. Smith", citations ("Vaswani A.") and
# "Last, First".
EN_FAMILY_NAMES_MORE = frozenset(
    (
        "Lindqvist Lindberg Lindgren Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson "
        "Persson Svensson Gustafsson Pettersson Jensen Nielsen Hansen Pedersen Andersen Larsen "
        "Sørensen Rasmussen Virtanen Korhonen Müller Mueller Schmidt Schneider Fischer Weber "
        "Meyer Wagner Becker Schulz Hoffmann Koch Richter Klein Wolf Schröder Neumann Schwarz "
        "Dubois Durand Lefebvre Moreau Laurent Simon Michel Leroy Roux Fournier Girard Bonnet "
        "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo "
        "Conti Costa Giordano Mancini Rizzo Lombardi Moretti Fernandes Pereira Oliveira Santos "
        "Rodrigues Almeida Carvalho Sousa Ribeiro Gomes Martins Lopes Alves Kowalski Nowak "
        "Wiśniewski Wójcik Ivanov Petrov Smirnov Volkov Popov Sokolov Kuznetsov Novak Horvat "
        "Patel Shah Sharma Gupta Singh Kumar Verma Mehta Joshi Reddy Rao Nair Iyer Menon Das "
        "Bose Chatterjee Banerjee Mukherjee Kapoor Malhotra Agarwal Desai Pillai Vaswani Khan "
        "Hussain Ahmed Rahman Chaudhry Qureshi Siddiqui Haddad Khoury Nasser Mansour Saleh "
        "Okafor Okonkwo Adeyemi Mensah Osei Nkosi Mbeki Tanaka Suzuki Sato Takahashi Watanabe "
        "Ito Yamamoto Nakamura Kobayashi Kato Yoshida Yamada Sasaki Matsumoto Inoue Kimura "
        "Hayashi Shimizu Mori Abe Ikeda Hashimoto Ishikawa Ogawa Fujita Okada Goto Hasegawa "
        "Kim Park Choi Jung Jeong Kang Cho Yoon Jang Lim Shin Kwon Hwang Ahn Yoo Hong Jeon "
        "Nguyen Tran Pham Hoang Huynh Phan Vo Dang Bui Ngo Duong O'Connor O'Neill O'Brien "
        "Murphy Kelly Byrne Walsh Ryan Doyle McCarthy Gallagher Doherty Kennedy Lynch Quinn "
        "Hughes Shazeer Parmar Uszkoreit Jones Gomez Kaiser Polosukhin Hinton LeCun Bengio "
        "Goodfellow Sutskever Krizhevsky Mikolov Schmidhuber Hochreiter Devlin Radford Brown "
        "Thompson Fleming Barker Chapman Dawson Fletcher Holland Lambert Lawson Manning Newman "
        "Norris Osborne Parsons Pearson Quinn Sharp Sutton Walton Whitaker Wilkinson Yates"
    ).split()
)
# Surnames that start a Vietnamese or Korean name written in Latin letters.
VI_SURNAMES = (
    "Nguyễn Nguyen Trần Lê Phạm Pham Hoàng Huỳnh Huynh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương "
    "Lý Đinh Trương Tran"
).split()
KO_SURNAMES = (
    "Kim Lee Park Choi Jung Jeong Kang Cho Yoon Jang Lim Han Oh Seo Shin Kwon Hwang Ahn Song Yoo "
    "Hong Jeon Ko Moon Yang Son Bae Baek Heo Nam"
).split()

# Brands and firms named after a person: not a person ("Jack Daniel's", "Morgan Stanley").
EN_BRAND_NAMES = frozenset(
    (
        "Jack Daniel|Johnnie Walker|Morgan Stanley|Betty Crocker|Tommy Hilfiger|Calvin Klein|"
        "Hugo Boss|Mary Kay|Ronald McDonald|Sam Adams|Jim Beam|Tim Hortons|Wells Fargo|"
        "Goldman Sachs|Dolce Gabbana|Charles Schwab|Walt Disney|Ben Sherman"
    ).split("|")
)

# --- added for the second pass (issue 15): rarer surnames, more given names, roles ---------------
# Rarer single-character surnames (a few hundred thousand bearers or fewer each). Only where a label,
# a title or a list places a name, or where the segmenter cuts one out, do they count.
ZH_RARE_SURNAMES = (
    "况佘冼邝仝苟邬皮隋戚柏展眭揭粟蹇缑笪谌郇佴鄢禚郄亓仉琚雒綦栗晁訾阚钭逯厍敖冷辛邸卞常楚于"
)
# Characters of given names that the tables above miss (classical and common modern ones).
ZH_GIVEN_CHARS_EXTRA = "贝朵令仲伯卓叔孟季尧帅彩承政景权标楚涌湄漪稼章策芹舜群少龄奇诺勋非航咏铎"
# Words that stand where a name stands (after "收件人：", at a chat line's start) but are roles,
# placeholders or answers, whatever jieba's counts say (客服 is rare in its dictionary).
ZH_ROLE_WORDS = frozenset(
    """
    本人 同上 见上 见下 同前 待定 暂无 未知 不详 匿名 保密 客服 物业 前台 保安 店长 店员 柜员 柜台
    快递 骑手 司机 医生 护士 老师 家长 家属 学生 同学 同事 领导 上级 下级 经理 主管 主任 总监 老板
    男士 女士 先生 小姐 某某 有限 公司 银行 医院 部门 单位 系统 管理员 机器人 助手 小助手 官方 平台
    自己 对方 双方 甲方 乙方 买家 卖家 商家 店家 用户 客户 会员 游客 访客 网友 粉丝 群主 管理
    患者 病人 本院 本科 本所 本公司 签字 签名 盖章 日期 时间 地址 电话 手机 邮箱 备注 说明 原因
    """.split()
)
# Couriers and other brands that look like a surname and a given name (申通 77320188452).
ZH_NOT_NAMES_MORE = frozenset(
    """
    申通 圆通 中通 韵达 顺丰 百世 德邦 极兔 天天 宅急送 京东 邮政 菜鸟 丰巢 江小白 王致和 张裕
    小红书 小米 杨国福 张亮 周生生 谢馥春 胡庆余堂 雷允上 马大姐 刘老根 白象 金龙鱼 鲁花 海天 李锦记 钟薛高
    """.split()
)

# More given names (census ranks 300-1000 and international ones, with their diacritics) that are
# rarely English words: one of them and a capitalized word is a name ("Hans Zimmer").
EN_GIVEN_NAMES_EXTRA = frozenset(
    (
        "Abraham Nelson Dana Ray Hans Fatima Declan Beatriz Mohammed Mohammad Muhammad Ahmad Ahmed "
        "Yusuf Ekaterina Raj Tomas Tomás Raul Raúl Jörg Jorg Björn Bjorn Ólafur Olafur Siobhán "
        "Siobhan Jean-Luc Jean-Pierre Jean-Paul Marie-Claire Anne-Marie Hanako Taro Hiroko Yoshiko "
        "Akiko Haruka Yuko Kazuki Daiki Shota Ryo Riku Sora Yuna Minji Jiwoo Seojun Minjun Hyun "
        "Dong-hyun Ji-woo Seo-yeon Min-jun Joon Sung Jae Eun Hye Soo "
        "Ahmet Mehmet Mustafa Emre Murat Burak Elif Zeynep Ayse Ayşe Fatma Emine Hatice Merve "
        "Selin Deniz Can Cem Kemal Orhan Serkan Hakan Volkan Oguz "
        "Abdullah Abdul Abdulrahman Hamza Bilal Faisal Fahad Saad Sultan Nasser Majid Adel Hani "
        "Ziad Rami Sami Tarek Tareq Wael Yasser Osama Mahmoud Mustafa Jamal Kamal Anwar Aziz "
        "Samira Nadia Rana Lina Dalia Hiba Ghada Lubna Mona Nada Rasha Sana Suha Wafa "
        "Ravi Sanjay Rohit Sachin Virat Ajay Akash Anand Ankit Gaurav Harish Jatin Kunal Mohit "
        "Naveen Pankaj Pradeep Rajiv Sandeep Saurabh Shubham Sumit Tarun Varun Vinay Yash "
        "Aishwarya Anushka Kavita Kiran Madhuri Nandini Pallavi Preeti Radha Rekha Ritu Shreya "
        "Shweta Sonia Sunita Swati Tanvi Usha Vidya "
        "Oleg Igor Yuri Yury Boris Vladimir Viktor Vadim Artem Anton Denis Maxim Roman Ruslan "
        "Konstantin Evgeny Yevgeny Stanislav Vasily Gennady Lyudmila Galina Marina Yulia Yelena "
        "Oksana Larisa Valentina Vera Nadezhda Polina Daria Darya Ksenia Alina Sofiya "
        "Jakub Kacper Szymon Wojciech Marek Pawel Paweł Łukasz Lukasz Michał Michal Mateusz "
        "Zofia Kasia Joanna Ewa Aleksandra Dorota Monika Karolina Natalia Weronika "
        "Jiří Jiri Petr Pavel Tomáš Jan Lucie Tereza Eliška Zuzana Vojtěch "
        "Ferenc László Laszlo Zoltán Zoltan Gábor Gabor Attila István Istvan Zsófia "
        "Mihai Andrei Ionut Alexandru Florin Bogdan Ioana Andreea Bianca Roxana "
        "Nikos Giorgos Dimitris Kostas Yannis Eleni Katerina Sofia Despina "
        "Matthias Jürgen Juergen Günter Gunter Horst Helmut Manfred Rainer Reinhard Ulrich Jörn "
        "Dirk Sven Torsten Thorsten Kai Timo Jannik Malte Henning Ole Till Gerhard Karl-Heinz "
        "Annika Svenja Wiebke Silke Anke Dörte Jutta Gisela Renate Ingeborg Liesel Friederike "
        "Søren Soren Mette Sanne Lotte Kirsten Bodil Ingrid Solveig Kari Tove Åsa Asa Linnéa "
        "Sigurður Guðrún Gudrun Einar Ragnar Thor Knut Terje Bjørn Geir Arne Odd Per Pål "
        "Aino Eero Juha Jukka Matti Pekka Mikko Sami Tuomas Ville Anneli Päivi Tiina "
        "François Francois Jérôme Jerome Sébastien Sebastien Stéphane Stephane Frédéric "
        "Frederic Benoît Benoit Rémi Remi Clément Clement Théo Hervé Herve Gaël Gael Loïc Loic "
        "Mathilde Clémence Clemence Aurélie Aurelie Émilie Emilie Séverine Geneviève Genevieve "
        "Anaïs Anais Maëlle Noémie Noemie Solène Océane Oceane Brigitte Françoise Francoise "
        "Giacomo Riccardo Federico Davide Simone Massimo Fabio Emanuele Gianluca Pietro Enrico "
        "Alessia Federica Valeria Silvia Elisa Sara Ilaria Martina Alessandra Roberta "
        "José Jose Jesús Jesus Ángel Angel Álvaro Alvaro Andrés Andres Óscar Oscar Iñaki Inaki "
        "Joaquín Joaquin Martín Nicolás Nicolas Sebastián Sebastian Ramón Ramon Rubén Ruben "
        "Adrián Adrian Iván Hernán Hernan Agustín Agustin Matías Matias Gonzalo Ignacio "
        "María Maria Lucía Sofía Valentina Ximena Guadalupe Rocío Rocio Inés Ines Begoña Nuria "
        "Montserrat Marisol Alejandra Verónica Veronica Patricia Lorena Paola Mónica Julieta "
        "João Joao Gonçalo Goncalo Duarte Afonso Vitória Vitoria Conceição Leonor "
        "Chidi Emeka Obinna Ifeanyi Adebayo Babajide Olumide Yemi Kehinde Taiwo Chiamaka "
        "Adaeze Nneka Folake Funmilayo Kwabena Kwaku Yaw Akosua Efua Esi Jomo Wanjiru Njeri "
        "Otieno Kamau Mandla Themba Lerato Naledi Zanele Nomvula Bongani Tendai Tatenda "
        "Kenta Takumi Yusuke Daisuke Naoki Satoshi Tetsuya Masato Koji Shinji Hideo Ichiro "
        "Makoto Osamu Tsubasa Yui Rin Mio Miyu Nanami Ayaka Misaki Kanako Chihiro Natsumi "
        "Arjun Ishaan Kabir Reyansh Vihaan Aryan Dev Riya Saanvi Diya Ishita Myra "
        "Darius Cyrus Reza Mehdi Hossein Farid Arash Babak Kaveh Shirin Parisa Nasrin Leyla "
        "Alistair Angus Hamish Fergus Ewan Euan Niall Ruairi Oisin Cormac Ronan Eamon Eamonn "
        "Brendan Kieran Ciaran Padraig Grainne Orla Roisin Sinead Caoimhe Maeve Clodagh "
        "Gwen Rhys Dafydd Gareth Cerys Bethan Megan Ffion Sian "
        "Bartholomew Barnaby Benedict Cuthbert Ignatius Leopold Montgomery Percival Reginald "
        "Winston Thaddeus Atticus Augustus Cornelius Ezekiel Ezra Gideon Jedediah Josiah "
        "Ebenezer Horace Ambrose Clement Rupert Quentin Humphrey Nigel Clive Desmond Malcolm "
        "Duncan Graham Gordon Lachlan Murray Ross Stuart Bruce Douglas Craig Kenneth "
        "Gertrude Mildred Edna Ethel Agnes Bertha Blanche Edith Enid Hilda Imogen Beatrix "
        "Harriet Henrietta Philippa Rosalind Winifred Wilhelmina Cordelia Ophelia Octavia "
        "Jessica Jasmine Priscilla Rebekah Tabitha Miriam Esther Naomi Ruth Deborah Judith "
        "Brianna Destiny Jasmine Kayla Mackenzie Makayla Morgan Paige Savannah Sydney Taylor "
        "Trinity Alyssa Gabrielle Jenna Kaitlyn Katelyn Kylie Mariah Shelby Sierra "
        "Darnell DeShawn Deshawn Jamal Jermaine Lamar Malik Marquis Terrence Tyrone Andre "
        "Dwayne Cedric Clarence Reggie Rodney Roderick Xavier Zion "
        "Trevor Derek Damian Dominic Garrett Grant Jared Jeremiah Marcus Mitchell Preston Seth "
        "Spencer Tristan Wesley Brady Bradley Brent Chad Clayton Cody Corey Dustin Edwin Elliot "
        "Elliott Emmett Franklin Harvey Herbert Lloyd Leon Milton Morris Nathaniel Rodrigo "
        "Rafael Ramiro Salvador Santiago Sergio Teodoro Vicente "
        "Daphne Delilah Eloise Estelle Fern Florence Gemma Georgina Gwendolyn Heidi Ingrid "
        "Juliet Kristina Lorraine Lydia Maxine Melanie Meredith Miranda Natasha Penelope "
        "Phoebe Rosemary Rosalie Scarlett Serena Sienna Tamara Ursula Veronica Yolanda Zara "
        "Cindy Coco Cherry Sunny Echo Winnie Yoyo Kiki Mandy Sandy Peggy Joey Jacky Ricky Vicky "
        "Elaine Daisy Bonnie Connie Fanny Gigi Janice Zoey Ella Tiffany Selina Jolin Kelvin "
        "Alvin Calvin Edison Felix Howard Ivan Jimmy Johnny Kenny Leon Nelson Oscar Sunny Terry "
        "Vincent Wilson Yvonne Bella Cathy Doris Emily Flora Gloria Helen Irene Joyce Linda"
    ).split()
)
# Family names beyond the tables above, for the same pairs and for "Given Family" checks.
EN_FAMILY_NAMES_EXTRA = frozenset(
    (
        "Mandela Lincoln Zimmer Demir Smirnova Petrova Ivanova Popova Sokolova Volkova Kuznetsova "
        "Yilmaz Yılmaz Kaya Şahin Sahin Çelik Celik Öztürk Ozturk Aydin Aydın Arslan Doğan Dogan "
        "Haddad Aziz Farouk Abdullah Hamdan Karimi Hosseini Rahimi Mohammadi Ahmadi Jafari "
        "Andersson Lindström Lundqvist Bergström Holm Berg Dahl Halvorsen Johansen Olsen "
        "Müller Mueller Schäfer Schafer Zimmermann Krüger Kruger Hartmann Lange Werner Krause "
        "Lehmann Köhler Kohler Herrmann König Konig Walter Mayer Huber Kaiser Fuchs Peters "
        "Rivera Morales Ortiz Gutierrez Gutiérrez Ruiz Díaz Diaz Álvarez Alvarez Romero Navarro "
        "Domínguez Dominguez Vázquez Vazquez Ramos Gil Serrano Blanco Molina Castro Ortega "
        "Delgado Medina Herrera Castillo Jiménez Jimenez Vargas Reyes Cruz Flores Mendoza "
        "Hughes Carter Mitchell Roberts Phillips Evans Turner Parker Collins Edwards Stewart "
        "Morris Rogers Reed Cook Morgan Bell Murphy Bailey Cooper Richardson Cox Howard Ward "
        "Peterson Gray Watson Brooks Sanders Price Bennett Wood Barnes Ross Henderson Coleman "
        "Jenkins Perry Powell Long Patterson Fisher Simmons Foster Bryant Alexander Russell "
        "Griffin Hayes Myers Ford Hamilton Graham Sullivan Wallace West Cole Jordan Owens "
        "Reynolds Ellis Harrison Gibson McDonald Marshall Wells Webb Tucker Hunt Palmer Black "
        "Malhotra Chopra Khanna Bhatia Sethi Saxena Srivastava Tiwari Mishra Pandey Dubey "
        "Chauhan Thakur Yadav Naidu Krishnan Subramanian Venkatesh Ramanathan "
        "O'Connell O'Sullivan O'Donnell O'Reilly O'Hara Fitzgerald Brennan Keane Nolan Power "
        "Arnalds Bhriain Picard Doe Wong Chan Cheung Leung Lau Ng Ho Yip Tsang Kwok Chow "
        "Petrović Petrovic Jovanović Jovanovic Nikolić Nikolic Kovač Kovac Novák Dvořák Svoboda "
        "Nagy Kovács Kovacs Szabó Szabo Tóth Toth Popescu Ionescu Papadopoulos Georgiou "
        "Mensah Boateng Asante Owusu Adeyemi Okeke Eze Nwosu Obi Mwangi Otieno Kamau Dlamini "
        "Ismail Rahman Abdullah Hassan Hashim Ibrahim Yusof Tan Lim Teo Goh Ong Chua"
    ).split()
)
