"""The banner the demo prints once it runs: what a newcomer needs — where the regions are, who
can sign in, the demo cases to look up, and where to apply online."""

from __future__ import annotations

import unicodedata
from typing import Any

from node.accounts.staff import ROLE_LABELS
from node.cases.lifecycle import STATUS_LABELS, Status
from node.config import NodeConfig
from node.demo.regions import DEMO_NAMES, DEMO_PASSWORD, DEMO_USERS
from node.demo.stories import STORIES
from node.identity.devprovider import LABEL as PROVIDER_LABEL
from node.identity.devprovider import DevProvider

#: Items of the demo catalogue offered 全程网办, shown in the banner as /apply/{code}.
DEMO_ONLINE_ITEMS = {"430400": "430400-GG-0001", "370500": "370500-QR-0001"}


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (a Chinese character takes two)."""
    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(1, width - used)


def banner(
    configs: list[NodeConfig],
    cases: dict[str, dict[str, Any]],
    provider: DevProvider | None = None,
) -> list[str]:
    """What a newcomer needs: where the regions are, who can sign in, a case to look up."""
    names = {c.region: c.name for c in configs}
    urls = {c.region: c.url for c in configs}
    lines = ["", "通办 Tongban 演示 — 三个地区已启动 (three regions running)", ""]
    lines.append("  " + _pad("地区 region", 20) + "网址 URL")
    for config in configs:
        lines.append("  " + _pad(f"{config.name} {config.region}", 20) + f"{config.url}/")
    lines.append(
        "  页面 pages: /login 工作人员登录 · /window 窗口收件 · /office 办件箱 · "
        "/supervision 监督 · /query 群众办件查询 · /video 视频办"
    )
    lines += ["", "办事指南 guide（群众无需登录 no login；大厅二维码 QR sheet: /guide/qr-sheet）"]
    for config in configs:
        lines.append("  " + _pad(f"{config.name} {config.region}", 20) + f"{config.url}/guide")
    lines += ["", f"登录 logins（三个地区相同 same everywhere，密码 password: {DEMO_PASSWORD}）"]
    lines.append(
        "  "
        + _pad("用户名 user", 13)
        + _pad("岗位 role", 13)
        + "".join(_pad(c.name, 9) for c in configs)
    )
    for username in DEMO_USERS:
        lines.append(
            "  "
            + _pad(username, 13)
            + _pad(ROLE_LABELS[username], 13)
            + "".join(
                _pad(DEMO_NAMES.get(c.region, {}).get(username, username), 9) for c in configs
            )
        )
    example = cases.get("dispatched") or cases.get("supplement")
    if example:
        lines += [
            "",
            "群众查询示例 citizen lookup（无需登录 no login）:",
            f"  {urls[example['receiving']]}/query?case={example['case_no']}",
            f"  受理编号 {example['case_no']}  查询码 {example['query_code']}"
            f"  （{example['title']}，可评价）",
        ]
        other = cases.get("supplement")
        if other and other is not example:
            lines.append(
                f"  {urls[other['receiving']]}/query?case={other['case_no']}"
                f"  查询码 {other['query_code']}  （{other['title']}）"
            )
    if cases:
        lines += ["", "演示办件 demo cases（群众在收件地网址的 /query 查询）:"]
        lines.append(
            "  "
            + _pad("收件地→办理地", 24)
            + _pad("受理编号", 28)
            + _pad("状态", 18)
            + _pad("查询码", 8)
            + "说明"
        )
        for story in STORIES:
            entry = cases.get(story.key)
            if entry is None:
                continue
            handling = [names.get(h, h) for h in entry["handling"].split(",")]
            receiving = names.get(entry["receiving"], entry["receiving"])
            if entry["mode"] == "online":
                where = f"{receiving}（全程网办）"
            else:
                where = f"{receiving}→{'、'.join(handling)}"
            status = entry["status"]
            label = "多地联办" if status == "bundle" else STATUS_LABELS[Status(status)]
            overlay = {"overdue": "超期", "warning": "预警"}.get(entry.get("time_status", ""))
            if overlay:
                label += f"·{overlay}"
            lines.append(
                "  "
                + _pad(where, 24)
                + _pad(entry["case_no"], 28)
                + _pad(label, 18)
                + _pad(entry["query_code"], 8)
                + entry["title"]
            )
            for part in entry.get("parts", []):
                lines.append(
                    "  "
                    + _pad(f"  └ {names.get(part['handling'], part['handling'])}", 24)
                    + _pad(part["case_no"], 28)
                    + _pad(STATUS_LABELS[Status(part["status"])], 18)
                )
    if provider is not None:
        lines += [
            "",
            f"{PROVIDER_LABEL}:",
            f"  {provider.issuer}/  (development identity provider, demo only)",
            "  全程网办 online applications on a phone (sign in there as one of the demo people):",
        ]
        for config in configs:
            if config.region in DEMO_ONLINE_ITEMS:
                lines.append(f"  {config.url}/apply/{DEMO_ONLINE_ITEMS[config.region]}")
        for who in provider.people:
            lines.append(f"  {_pad(who.name, 8)}{who.id_number}")
    lines += ["", "Ctrl-C 退出 to stop."]
    return [line.rstrip() for line in lines]
