"""The top-level partners.toml: an example of the demo regions' trust root that parses as a
node's trust root does."""

from __future__ import annotations

from pathlib import Path

from node.federation.partners import load_partners

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_trust_root_parses_and_names_the_demo_regions() -> None:
    partners = load_partners(ROOT / "partners.toml")
    assert {(p.region, p.name) for p in partners.values()} == {
        ("430400", "衡阳市"),
        ("430523", "邵阳县"),
        ("370500", "东营市"),
    }
    assert all(len(p.keys) == 1 for p in partners.values())
    assert "PRIVATE" not in (ROOT / "partners.toml").read_text(encoding="utf-8")
