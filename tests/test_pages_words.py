"""Small words of the pages that people stumbled over (the walk through the pages): counts
that match what was handed in, one punctuation mark, file kinds in words, a favicon."""

from __future__ import annotations

from pathlib import Path

from node.pages import videos
from node.pages.case_files import FILE_KINDS
from node.pages.office import event_text

ROOT = Path(__file__).resolve().parents[1]


def test_the_timeline_counts_the_files_given_and_names_deferred_and_pledged() -> None:
    event = {
        "action": "submit",
        "data": {"materials": 6, "deferred": ["消防验收意见"], "pledged": ["承诺书"]},
    }
    assert event_text(event, {}) == "材料 4 份；容缺 1 项；告知承诺 1 项"
    assert event_text({"action": "submit", "data": {"materials": 3}}, {}) == "材料 3 份"


def test_file_kinds_are_words_not_media_types() -> None:
    assert FILE_KINDS["text/plain"] == "文本"
    assert all("/" not in word and word.upper() != "PLAIN" for word in FILE_KINDS.values())


def test_rectifications_do_not_double_their_punctuation() -> None:
    template = (ROOT / "node/pages/templates/office/case.html").read_text(encoding="utf-8")
    assert 'r.rectification.rstrip("。；;.") }}{% if r.follow_up %}；回访' in template


def test_every_page_names_its_favicon() -> None:
    base = (ROOT / "node/pages/templates/base.html").read_text(encoding="utf-8")
    assert 'rel="icon" href="/static/favicon.svg"' in base
    assert (ROOT / "node/pages/static/favicon.svg").read_text(encoding="utf-8").startswith("<svg")


def test_a_meeting_is_named_a_meeting_in_state_actions_and_timeline() -> None:
    meeting = {"note": "云见面：核实经营意愿", "scheduled_at": "2030-06-03T10:00:00+08:00"}
    inspection = {"scheduled_at": "2030-06-03T10:00:00+08:00", "site_address": "石鼓区"}
    labels = {
        "schedule_inspection": "安排勘验",
        "complete_inspection": "完成勘验",
        "accept": "受理",
    }
    assert videos.status_words(meeting) == {"inspection": "云见面中"}
    assert videos.status_words(inspection) == {}
    assert videos.action_words(labels, meeting) == {
        "schedule_inspection": "安排云见面",
        "complete_inspection": "完成云见面",
        "accept": "受理",
    }
    assert videos.action_words(labels, inspection) == labels
    event = {"action": "schedule_inspection", "data": {"scheduled_at": meeting["scheduled_at"]}}
    assert event_text(event, {}, videos.words(meeting)).startswith("见面时间 ")
    assert event_text(event, {}, videos.words(inspection)).startswith("勘验时间 ")
    assert videos.evidence_kinds(meeting)["record"] == "云见面记录"
    assert videos.evidence_kinds(inspection)["record"] == "勘验笔录"
