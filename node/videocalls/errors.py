"""Stable error codes of 视频办, with the Chinese a person reads."""

from __future__ import annotations

from node.http_errors import ApiError

#: code → (HTTP status, message shown to people)
CODES: dict[str, tuple[int, str]] = {
    "invalid_input": (400, "提交的信息有误，请按提示修改"),
    "queue_full": (503, "当前排队人数已满，请稍后再试，或留下电话等待回电"),
    "too_many_calls": (429, "发起视频咨询过于频繁，请稍后再试"),
    "outside_hours": (409, "当前不在视频办服务时间，可留下电话，工作人员将在服务时间回电"),
    "call_not_found": (404, "视频咨询不存在"),
    "call_key_invalid": (403, "无权进入该视频咨询"),
    "call_over": (409, "本次视频咨询已结束"),
    "call_taken": (409, "该来电已由其他工作人员接听或已离开"),
    "not_picked": (409, "尚未有工作人员接听，请继续等候"),
    "not_your_call": (403, "该来电不是由您接听的"),
    "not_on_duty": (403, "请先在视频办页面选择“参与视频接听”"),
    "not_ended": (409, "通话结束后才能评价"),
    "already_rated": (409, "本次通话已评价"),
    "join_first": (400, "请先加入"),
    "message_malformed": (400, "消息格式错误"),
    "unknown_message": (400, "不支持的消息类型"),
    "rate_limited": (429, "消息过于频繁"),
    "unauthorized": (401, "请重新登录"),
    "forbidden": (403, "您的岗位不能进行此操作"),
    "no_snapshots": (409, "本次通话还没有截图"),
    "callback_not_found": (404, "回电请求不存在"),
    "callback_taken": (409, "该回电请求已由其他工作人员处理"),
    "no_phone": (404, "群众没有留下电话"),
}


class VideoCallError(ApiError):
    """A refusal with one of ``CODES``; a refused request changes nothing."""

    def __init__(
        self, code: str, message: str | None = None, *, fields: list[dict[str, str]] | None = None
    ) -> None:
        status, default = CODES[code]
        super().__init__(status, code, message or default, fields=fields)
