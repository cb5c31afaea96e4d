"""Small words of the pages that people stumbled over (the walk through the pages): counts
that match what was handed in, one punctuation mark, file kinds in words, a favicon."""

from __future__ import annotations

from pathlib import Path

from node.pages.office import FILE_KINDS, event_text

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
