"""partners.toml: the trust root (docs/protocol.md).

One ``[[partners]]`` entry per partner region with ``region``, ``name``, ``url`` and
``[[partners.keys]]`` entries (``kid``, ``public_key``, ``not_before``, ``not_after``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import FederationSettings, plain_http_refused
from protocol.keys import REGION_RE, TrustedKey


class PartnersFileError(Exception):
    pass


@dataclass(frozen=True)
class Partner:
    region: str
    name: str
    url: str
    keys: tuple[TrustedKey, ...]


def load_partners(path: Path, settings: FederationSettings | None = None) -> dict[str, Partner]:
    """Read partners.toml; a missing file means no partners yet. With ``settings`` (a node
    that will deliver), a partner URL that ``plain_http_refused`` refuses refuses the file."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PartnersFileError(f"{path}: {exc}") from exc
    partners = parse_partners(data, source=str(path))
    if settings is not None:
        problems = refused_partners(partners, settings, source=str(path))
        if problems:
            raise PartnersFileError("; ".join(problems))
    return partners


def refused_partners(
    partners: dict[str, Partner], settings: FederationSettings, *, source: str = "partners.toml"
) -> list[str]:
    """One message per partner whose URL may not be used (plain HTTP off loopback), naming
    the partner and the fix."""
    out = []
    for partner in partners.values():
        refused = plain_http_refused(partner.url, settings)
        if refused is not None:
            out.append(
                f"{source}: partner {partner.region} {partner.name}: {refused}. "
                "Fix: put its https:// URL in partners.toml (ask the partner for its HTTPS "
                "entry and `tongban partners add` it) or remove the entry; allow_plain_http "
                "only on a closed test network"
            )
    return out


def parse_partners(data: dict[str, Any], *, source: str = "partners.toml") -> dict[str, Partner]:
    partners: dict[str, Partner] = {}
    for index, entry in enumerate(data.get("partners", [])):
        where = f"{source}: partners[{index}]"
        try:
            region = str(entry["region"])
            name = str(entry["name"])
            url = str(entry["url"]).rstrip("/")
        except KeyError as exc:
            raise PartnersFileError(f"{where} lacks {exc.args[0]}") from exc
        if not REGION_RE.match(region):
            raise PartnersFileError(f"{where}: region {region!r} is not a 6-digit code")
        if region in partners:
            raise PartnersFileError(f"{where}: region {region} listed twice")
        keys = []
        for key_entry in entry.get("keys", []):
            try:
                keys.append(TrustedKey.from_claim(region, dict(key_entry)))
            except (ValueError, TypeError) as exc:
                raise PartnersFileError(f"{where}: key: {exc}") from exc
        partners[region] = Partner(region=region, name=name, url=url, keys=tuple(keys))
    return partners


def render_partners(partners: list[Partner]) -> str:
    """partners.toml text for ``partners`` (TOML offset date-times for validity)."""
    lines = ["# Trust root: the partner regions this node exchanges envelopes with.", ""]
    for partner in partners:
        lines += [
            "[[partners]]",
            f'region = "{partner.region}"',
            f"name = {_toml_string(partner.name)}",
            f"url = {_toml_string(partner.url)}",
        ]
        for key in partner.keys:
            claim = key.to_claim()
            lines += [
                "",
                "[[partners.keys]]",
                f'kid = "{claim["kid"]}"',
                f'public_key = "{claim["public_key"]}"',
                f"not_before = {key.not_before.isoformat()}",
                f"not_after = {key.not_after.isoformat()}",
            ]
        lines.append("")
    return "\n".join(lines)


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
