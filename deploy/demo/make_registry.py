"""Generates deploy/demo/registry.json: a demo helper registry for central Wuhan (reproducible).

python deploy/demo/make_registry.py [--volunteers 300] [--out deploy/demo/registry.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DISTRICTS = {  # code: (name, lat, lon, spread in degrees)
    "420102": ("江岸区", 30.600, 114.310, 0.030),
    "420103": ("江汉区", 30.600, 114.270, 0.020),
    "420104": ("硚口区", 30.580, 114.220, 0.025),
    "420105": ("汉阳区", 30.550, 114.220, 0.035),
    "420106": ("武昌区", 30.550, 114.320, 0.030),
    "420107": ("青山区", 30.630, 114.390, 0.030),
    "420111": ("洪山区", 30.500, 114.340, 0.050),
}
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红波建华辉鹏晶燕斌玲"
    "丹宇浩凯欣怡晨阳婷雪琳"
)
SKILLS = [
    "sign_language",
    "driving",
    "wheelchair_vehicle",
    "nursing",
    "counselling",
    "legal",
    "guiding",
]
SKILL_WEIGHTS = [1.0, 3.0, 0.8, 1.5, 1.0, 0.5, 1.5]


def volunteers(rng: random.Random, count: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    codes = list(DISTRICTS)
    for i in range(1, count + 1):
        code = rng.choice(codes)
        _, lat, lon, spread = DISTRICTS[code]
        skills = sorted(set(rng.choices(SKILLS, SKILL_WEIGHTS, k=rng.randint(0, 3))))
        if rng.random() < 0.1 and "sign_language" not in skills:
            skills = sorted([*skills, "sign_language"])
        needs = ["food", "medicine"] if rng.random() < 0.1 else []
        name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.randint(1, 2)))
        out.append(
            {
                "id": f"vol-{i:04d}",
                "kind": "volunteer",
                "name": name,
                "lat": round(lat + rng.uniform(-spread, spread), 5),
                "lon": round(lon + rng.uniform(-spread, spread), 5),
                "radius_km": rng.choice([2, 3, 4, 5, 6, 8]),
                "capacity": rng.randint(1, 4),
                "skills": skills,
                "needs": needs,
                "divisions": [code],
                "contact": {
                    "phone": f"139{rng.randint(0, 99_999_999):08d}",
                    "wechat_webhook": None,
                },
            }
        )
    return out


def agencies() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for code, slug in (
        ("420102", "jiangan"),
        ("420103", "jianghan"),
        ("420106", "wuchang"),
        ("420111", "hongshan"),
    ):
        name = DISTRICTS[code][0]
        out.append(
            {
                "id": f"mzj-{slug}",
                "kind": "agency",
                "name": f"武汉市{name}民政局",
                "needs": ["benefits", "housing", "daily_care"],
                "divisions": [code],
                "capacity": 1000,
                "contact": {"email": f"mzj-{slug}@example.gov.cn"},
            }
        )
    out += [
        {
            "id": "rsj-wuhan",
            "kind": "agency",
            "name": "武汉市人力资源和社会保障局",
            "needs": ["employment", "education"],
            "divisions": ["420100"],
            "capacity": 1000,
            "contact": {"email": "rsj@example.gov.cn"},
        },
        {
            "id": "wjw-jianghan",
            "kind": "agency",
            "name": "江汉区卫生健康局",
            "needs": ["medical_care", "medicine", "rehabilitation"],
            "divisions": ["420103"],
            "capacity": 1000,
            "contact": {"email": "wjw-jianghan@example.gov.cn"},
        },
        {
            "id": "wjw-wuchang",
            "kind": "agency",
            "name": "武昌区卫生健康局",
            "needs": ["medical_care", "medicine", "rehabilitation"],
            "divisions": ["420106"],
            "capacity": 1000,
            "contact": {"email": "wjw-wuchang@example.gov.cn"},
        },
        {
            "id": "legal-aid-wuhan",
            "kind": "agency",
            "name": "武汉市法律援助中心",
            "needs": ["legal_aid"],
            "divisions": ["420100"],
            "capacity": 1000,
            "contact": {"email": "legal-aid@example.gov.cn"},
        },
        {
            "id": "rehab-wuhan",
            "kind": "agency",
            "name": "武汉市残疾人康复中心",
            "needs": ["rehabilitation", "assistive_device", "disability_assessment"],
            "divisions": ["420100"],
            "capacity": 1000,
            "contact": {"email": "rehab@example.org"},
        },
        {
            "id": "psy-hotline-wuhan",
            "kind": "agency",
            "name": "武汉市心理援助热线",
            "needs": ["psychological_support"],
            "divisions": ["420100"],
            "capacity": 1000,
            "contact": {"email": "psy@example.org"},
        },
        {
            "id": "zjj-wuhan",
            "kind": "agency",
            "name": "武汉市住房和城乡建设局",
            "needs": ["housing", "accessibility_renovation", "utilities"],
            "divisions": ["420100"],
            "capacity": 1000,
            "contact": {"email": "zjj@example.gov.cn"},
        },
        {
            "id": "care-home-jianghan",
            "kind": "agency",
            "name": "江汉区残疾人托养中心",
            "needs": ["daily_care"],
            "divisions": ["420103"],
            "capacity": 40,
            "contact": {"email": "tuoyang@example.org"},
        },
    ]
    return out


def duty_desk() -> dict[str, object]:
    return {
        "id": "duty-desk-wuhan",
        "kind": "duty_desk",
        "name": "武汉市残联值班室",
        "divisions": ["420100"],
        "capacity": 100000,
        "contact": {"email": "duty@example.org"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volunteers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("registry.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    helpers = [*volunteers(rng, args.volunteers), *agencies(), duty_desk()]
    args.out.write_text(
        json.dumps({"helpers": helpers}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    print(f"wrote {len(helpers)} helpers to {args.out}")


if __name__ == "__main__":
    main()
