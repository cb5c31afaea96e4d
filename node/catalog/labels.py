"""Chinese names for people of the catalogue's codes: modes, material forms, result types,
delivery and form-field types (shown by the API, the window and the guide)."""

from __future__ import annotations

MODE_LABELS: dict[str, str] = {
    "proxy": "异地代收代办",
    "online": "全程网办",
    "joint": "多地联办",
}
FORM_LABELS: dict[str, str] = {
    "original": "原件",
    "copy": "复印件",
    "scan": "电子扫描件",
    "form": "申请表（现场填写或下载）",
}
RESULT_LABELS: dict[str, str] = {
    "license": "许可证",
    "certificate": "证书（证明）",
    "approval_letter": "批准文件",
    "registration": "登记（执照）",
    "filing": "备案",
    "other": "其他",
}
DELIVERY_LABELS: dict[str, str] = {"window": "窗口领取", "mail": "邮寄送达"}
FIELD_TYPE_LABELS: dict[str, str] = {
    "text": "文本",
    "number": "数字",
    "date": "日期",
    "select": "选择",
}
