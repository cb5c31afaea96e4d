"""Stable error codes of the inspection area, with their Chinese explanation."""

from __future__ import annotations

from node.http_errors import ApiError

#: code → (HTTP status, message shown to people)
CODES: dict[str, tuple[int, str]] = {
    "session_not_found": (404, "勘验会话不存在"),
    "session_ended": (409, "勘验会话已结束"),
    "session_not_live": (409, "勘验尚未开始或已结束"),
    "session_elsewhere": (503, "正在连接勘验会话，请稍候重试"),
    "token_missing": (401, "缺少邀请码，请使用完整的邀请链接"),
    "token_malformed": (401, "邀请码格式错误"),
    "token_invalid": (401, "邀请码无效"),
    "token_wrong_session": (403, "邀请码不属于本次勘验"),
    "token_expired": (401, "邀请码已过期，请联系窗口重新获取"),
    "token_used": (409, "邀请码已使用，请在原设备上继续，或联系窗口重新获取"),
    "resume_invalid": (401, "重连凭证无效，请重新扫码加入"),
    "not_a_participant": (403, "您不是本次勘验的参与人员"),
    "unauthorized": (401, "请重新登录"),
    "join_first": (400, "请先加入会话"),
    "sdp_malformed": (400, "媒体协商内容格式错误"),
    "sdp_too_large": (413, "媒体协商内容过大"),
    "message_malformed": (400, "消息格式错误"),
    "message_too_large": (413, "消息过大"),
    "unknown_message": (400, "不支持的消息类型"),
    "rate_limited": (429, "消息过于频繁"),
    "no_video": (409, "尚未收到申请人的视频画面"),
    "invalid_input": (400, "输入有误"),
    "checklist_not_used": (409, "云见面没有勘验要点"),
    "record_required": (400, "请填写勘验笔录"),
    "too_many_snapshots": (409, "截图数量已达上限"),
}


class InspectionError(ApiError):
    """A refusal with one of ``CODES``; the session and its evidence stay as they were."""

    def __init__(self, code: str, message: str | None = None) -> None:
        status, default = CODES[code]
        super().__init__(status, code, message or default)
