"""The partner directory without a network: signing refuses what nodes refuse, the trust
store's precedence as a matrix over where a region is listed, the [directory] settings, and
the authority's commands (docs/protocol.md §12.1). The verifier's refusals are the vectors
(tests/vectors/directories.json); nodes following a served directory are
tests/test_directory_node.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node.config import ConfigError, NodeConfig
from node.doctor import run_checks
from node.federation.descriptors import our_descriptor
from node.federation.directory_authority import (
    AuthorityError,
    entries_from,
    init_authority,
    load_authority,
    signed_directory,
    unsigned_directory,
)
from node.federation.directory_state import report, save_token
from node.federation.identity import NodeIdentity
from node.federation.models import partner_keys
from node.federation.partners import Partner, render_partners
from node.federation.trust import TrustStore
from node.provisioning import self_entry
from node.storage.database import Database
from protocol.directory import (
    AuthorityKey,
    DirectoryEntry,
    directory_claims,
    sign_directory,
    verify_directory,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.jws import parse
from protocol.keys import TrustedKey, generate_private_key, key_id, public_key_text, utc
from tests.support.databases import DatabaseFactory
from tests.support.directory import AUTHORITY, DAY, entry_of, synthetic_entries
from tests.support.nodes import make_configs


def key_of(region: str) -> TrustedKey:
    public = generate_private_key().public_key()
    now = time.time()
    return TrustedKey(
        kid=key_id(region, public),
        region=region,
        public_key=public,
        not_before=utc(now - DAY),
        not_after=utc(now + DAY),
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- signing ------------------------------------------------------------------------------------


def test_a_signed_directory_verifies_to_its_entries() -> None:
    key = generate_private_key()
    listed = synthetic_entries(3)
    now = int(time.time())
    claims = directory_claims(iss=AUTHORITY, serial=5, iat=now, exp=now + DAY, entries=listed)
    token = sign_directory(claims, key, authority=AUTHORITY)
    authority = AuthorityKey(AUTHORITY, key.public_key())
    assert parse(token, typ="tongban-directory+jwt", max_size=10**6).kid == authority.kid
    directory = verify_directory(token, [authority], now=now)
    assert directory.serial == 5 and directory.iss == AUTHORITY
    assert list(directory.entries.values()) == listed
    assert [k.kid for k in directory.entries[listed[0].region].keys] == [listed[0].keys[0].kid]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("duplicate", ErrorCode.DIRECTORY_DUPLICATE_REGION),
        ("other-iss", ErrorCode.DIRECTORY_INVALID_CLAIMS),
        ("serial-0", ErrorCode.DIRECTORY_INVALID_CLAIMS),
        ("too-long", ErrorCode.DIRECTORY_INVALID_CLAIMS),
        ("bad-url", ErrorCode.DIRECTORY_BAD_URL),
        ("small-order-key", ErrorCode.DIRECTORY_BAD_KEY),
    ],
)
def test_the_authority_cannot_sign_what_nodes_refuse(change: str, code: ErrorCode) -> None:
    key = generate_private_key()
    listed = synthetic_entries(2)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": AUTHORITY,
        "serial": 1,
        "iat": now,
        "exp": now + DAY,
        "regions": [e.to_claim() for e in listed],
    }
    if change == "duplicate":
        claims["regions"].append(claims["regions"][0])
    elif change == "other-iss":
        claims["iss"] = "370000"
    elif change == "serial-0":
        claims["serial"] = 0
    elif change == "too-long":
        claims["exp"] = now + 32 * DAY
    elif change == "bad-url":
        claims["regions"][1]["url"] = "https://user:pw@example.org"
    elif change == "small-order-key":
        # The neutral point: with it, R = neutral, S = 0 would sign every message.
        neutral = Ed25519PublicKey.from_public_bytes(b"\x01" + bytes(31))
        region = claims["regions"][1]["region"]
        claims["regions"][1]["keys"][0].update(
            kid=key_id(region, neutral), public_key=public_key_text(neutral)
        )
    with pytest.raises(ProtocolError) as exc:
        sign_directory(claims, key, authority=AUTHORITY)
    assert exc.value.code == code


# -- precedence: a matrix over where a region is listed -----------------------------------------

OWN, BOTH, FILE_ONLY, DIRECTORY_ONLY, NEITHER = "430400", "430523", "370500", "500001", "110000"


async def test_partners_toml_over_the_directory_for_every_kind_of_region(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    (config,) = await make_configs(tmp_path, databases, [(OWN, "衡阳市")], link=False)
    in_directory = {r: key_of(r) for r in (OWN, BOTH, DIRECTORY_ONLY)}
    in_file = {r: key_of(r) for r in (BOTH, FILE_ONLY)}
    config.partners_file.write_text(
        render_partners(
            [
                Partner(region=r, name=f"file-{r}", url=f"https://file-{r}.example", keys=(k,))
                for r, k in in_file.items()
            ]
        ),
        encoding="utf-8",
    )
    key = generate_private_key()
    now = int(time.time())
    entries = [
        DirectoryEntry(region=r, name=f"dir-{r}", url=f"https://dir-{r}.example", keys=(k,))
        for r, k in in_directory.items()
    ]
    token = sign_directory(
        directory_claims(iss=AUTHORITY, serial=1, iat=now, exp=now + DAY, entries=entries),
        key,
        authority=AUTHORITY,
    )
    directory = verify_directory(token, [AuthorityKey(AUTHORITY, key.public_key())], now=now)
    db = Database(config.database_url)
    try:
        trust = TrustStore(db, config.partners_file, config.federation)
        await trust.load()
        await trust.apply_directory(directory, own_region=OWN)
        # region: (partner?, source, name prefix, directory key trusted?, file key trusted?)
        expected = {
            OWN: (False, None, None, False, None),
            BOTH: (True, "partners.toml", "file-", False, True),
            FILE_ONLY: (True, "partners.toml", "file-", None, True),
            DIRECTORY_ONLY: (True, "directory", "dir-", True, None),
            NEITHER: (False, None, None, None, None),
        }
        for region, (partner, source, prefix, dir_key, file_key) in expected.items():
            found = trust.partner(region)
            assert (found is not None) == partner, region
            assert trust.sources.get(region) == source, region
            assert trust.keys.knows_region(region) == partner, region
            if prefix is not None:
                assert found is not None and found.name.startswith(prefix), region
            if dir_key is not None:
                assert (trust.keys.get(in_directory[region].kid) is not None) == dir_key, region
            if file_key is not None:
                assert (trust.keys.get(in_file[region].kid) is not None) == file_key, region

        # The descriptor sweep leaves directory regions to the directory.
        assert sorted(trust.swept_regions()) == sorted([BOTH, FILE_ONLY])

        # Keys learned from descriptors: for a directory region only under a key it lists.
        vouched, stray, filed = key_of(DIRECTORY_ONLY), key_of(DIRECTORY_ONLY), key_of(BOTH)
        signers = {
            vouched.kid: in_directory[DIRECTORY_ONLY].kid,
            stray.kid: key_id(DIRECTORY_ONLY, generate_private_key().public_key()),
            filed.kid: in_file[BOTH].kid,
        }
        async with db.write() as conn:
            for learned in (vouched, stray, filed):
                claim = learned.to_claim()
                await conn.execute(
                    partner_keys.insert().values(
                        kid=learned.kid,
                        region=learned.region,
                        public_key=claim["public_key"],
                        not_before=learned.not_before.timestamp(),
                        not_after=learned.not_after.timestamp(),
                        signed_by=signers[learned.kid],
                        learned_at=now,
                    )
                )
        await trust.apply_directory(directory, own_region=OWN)
        assert trust.keys.get(vouched.kid) is not None
        assert trust.keys.get(stray.kid) is None
        assert trust.keys.get(filed.kid) is not None

        # No directory in force: partners.toml alone.
        await trust.apply_directory(None, own_region=OWN)
        assert set(trust.partners) == {BOTH, FILE_ONLY}
        assert trust.partner(BOTH).name == f"file-{BOTH}"  # type: ignore[union-attr]
    finally:
        await db.dispose()


async def test_a_plain_http_directory_region_is_left_out_and_reported(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    (config,) = await make_configs(tmp_path, databases, [(OWN, "衡阳市")], link=False)
    entries = [
        DirectoryEntry(
            region="500001", name="a", url="http://10.0.0.5:8400", keys=(key_of("500001"),)
        ),
        DirectoryEntry(
            region="500002", name="b", url="http://127.0.0.1:8400", keys=(key_of("500002"),)
        ),
    ]
    key = generate_private_key()
    now = int(time.time())
    token = sign_directory(
        directory_claims(iss=AUTHORITY, serial=1, iat=now, exp=now + DAY, entries=entries),
        key,
        authority=AUTHORITY,
    )
    directory = verify_directory(token, [AuthorityKey(AUTHORITY, key.public_key())], now=now)
    db = Database(config.database_url)
    try:
        trust = TrustStore(db, config.partners_file, config.federation)
        await trust.load()
        await trust.apply_directory(directory, own_region=OWN)
        assert set(trust.partners) == {"500002"}
        assert "plain_http_refused" in trust.refused_regions["500001"]
    finally:
        await db.dispose()


# -- [directory] in tongban.toml ----------------------------------------------------------------


def config_with(tmp_path: Path, directory: str) -> NodeConfig:
    (tmp_path / "tongban.toml").write_text(
        'region = "430400"\nname = "衡阳市"\nurl = "http://127.0.0.1:8400"\n' + directory,
        encoding="utf-8",
    )
    return NodeConfig.load(tmp_path)


GOOD_KEY = AuthorityKey(AUTHORITY, generate_private_key().public_key()).text()


def test_directory_settings(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        f'[directory]\nurl = "https://dir.example/directory"\nauthority = "430000"\n'
        f'authority_keys = ["{GOOD_KEY}"]\nrefresh = 60\n',
    )
    assert config.directory is not None
    assert config.directory.refresh == 60.0
    assert [k.text() for k in config.directory.public_keys()] == [GOOD_KEY]
    assert config_with(tmp_path, "").directory is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('authority = "430000"\nauthority_keys = ["K"]', "lacks url"),
        ('url = "ftp://x"\nauthority = "430000"\nauthority_keys = ["K"]', "url"),
        ('url = "https://x"\nauthority = "430000"\nauthority_keys = []', "authority_keys"),
        ('url = "https://x"\nauthority = "430000"\nauthority_keys = ["abc="]', "abc="),
        ('url = "https://x"\nauthority = "43 00"\nauthority_keys = ["K"]', "authority"),
        ('url = "https://x"\nauthority = "430000"\nauthority_keys = ["K"]\nrefresh = 0', "refresh"),
        ('url = "https://x"\nauthority = "430000"\nauthority_keys = ["K"]\nkeys = 1', "unknown"),
    ],
)
def test_bad_directory_settings_are_refused(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_with(tmp_path, "[directory]\n" + body.replace('"K"', f'"{GOOD_KEY}"') + "\n")
    assert message in str(exc.value)


# -- the authority's commands -------------------------------------------------------------------


def test_authority_key_is_private_and_nodes_get_only_the_public_half(tmp_path: Path) -> None:
    made = run_cli(
        "directory", "init-authority", "--authority", AUTHORITY, "--out", str(tmp_path / "a")
    )
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "a"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / "authority.key").st_mode) == 0o600
    authority = load_authority(folder)
    assert f'authority_keys = ["{authority.public_key}"]' in made.stdout
    assert "PRIVATE" not in made.stdout
    again = run_cli("directory", "init-authority", "--authority", AUTHORITY, "--out", str(folder))
    assert again.returncode == 1 and "exists already" in again.stderr
    with pytest.raises(AuthorityError):
        init_authority(tmp_path / "b", "bad id!")


@pytest.mark.parametrize("toml", ["", "authority = 430000\n", 'authority = "bad id!"\n'])
def test_an_authority_folder_without_a_good_authority_id_is_refused(
    tmp_path: Path, toml: str
) -> None:
    """A hand-edited authority.toml that names no authority id (or a malformed one) is an
    AuthorityError naming the file, never a traceback or a directory signed as someone else."""
    folder = tmp_path / "a"
    init_authority(folder, AUTHORITY)
    (folder / "authority.toml").write_text(toml)
    with pytest.raises(AuthorityError, match=r"authority\.toml"):
        load_authority(folder)


async def test_build_takes_partner_files_and_descriptors_and_sign_always_raises_the_serial(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    shaoyang, hengyang = await make_configs(
        tmp_path, databases, [("430523", "邵阳县"), ("430400", "衡阳市")], link=False
    )
    sources = tmp_path / "registered"
    sources.mkdir()
    (sources / "430523.toml").write_text(
        render_partners([await self_entry(shaoyang)]), encoding="utf-8"
    )
    db = Database(hengyang.database_url)
    try:
        identity = await NodeIdentity.load(hengyang, db)
    finally:
        await db.dispose()
    (sources / "430400.jwt").write_text(our_descriptor(identity), encoding="ascii")
    listed = entries_from([sources], now=time.time())
    assert [e.region for e in listed] == ["430400", "430523"]
    assert listed[0].url == hengyang.url and listed[0].keys[0].kid == identity.kid

    # The same region from two sources is an error, as is a descriptor no listed key signed.
    (sources / "again.toml").write_text(
        render_partners([await self_entry(hengyang)]), encoding="utf-8"
    )
    with pytest.raises(AuthorityError, match="given twice"):
        entries_from([sources], now=time.time())
    (sources / "again.toml").unlink()
    forged = our_descriptor(identity).rsplit(".", 1)[0] + "." + "A" * 86
    (sources / "forged.jwt").write_text(forged, encoding="ascii")
    with pytest.raises(AuthorityError, match=r"forged\.jwt"):
        entries_from([sources], now=time.time())
    (sources / "forged.jwt").unlink()

    authority_dir = tmp_path / "authority"
    init_authority(authority_dir, AUTHORITY)
    unsigned = tmp_path / "directory.json"
    built = run_cli("directory", "build", "--out", str(unsigned), str(sources))
    assert built.returncode == 0, built.stderr
    assert json.loads(unsigned.read_text(encoding="utf-8")) == unsigned_directory(listed)
    out = tmp_path / "directory.jwt"
    serials = []
    for _ in range(2):
        signed = run_cli(
            "directory",
            "sign",
            "--authority-dir",
            str(authority_dir),
            "--in",
            str(unsigned),
            "--out",
            str(out),
        )
        assert signed.returncode == 0, signed.stderr
        serials.append(
            parse(out.read_bytes(), typ="tongban-directory+jwt", max_size=10**7).claims["serial"]
        )
    assert serials[1] > serials[0] >= int(time.time()) - 300
    authority = load_authority(authority_dir)
    keys = [AuthorityKey(AUTHORITY, authority.key.public_key())]
    assert set(verify_directory(out.read_bytes(), keys, now=time.time()).entries) == {
        "430400",
        "430523",
    }
    with pytest.raises(AuthorityError, match="lifetime"):
        signed_directory(
            authority, unsigned_directory(listed), serial=1, now=time.time(), lifetime=40 * DAY
        )


async def test_the_kept_directory_is_verified_again_with_the_keys_configured_now(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    (config,) = await make_configs(tmp_path, databases, [(OWN, "衡阳市")], link=False)
    authority = init_authority(tmp_path / "authority", AUTHORITY)
    token = signed_directory(
        authority, unsigned_directory(synthetic_entries(2)), serial=3, now=time.time()
    )
    save_token(config, token.encode("ascii"))
    assert stat.S_IMODE(os.stat(config.dir / "directory" / "directory.jwt").st_mode) == 0o600

    def follow(public_key: str) -> NodeConfig:
        path = config.dir / "tongban.toml"
        text = path.read_text(encoding="utf-8").split("[directory]")[0]
        path.write_text(
            text + f'[directory]\nurl = "https://dir.example/directory"\n'
            f'authority = "{AUTHORITY}"\nauthority_keys = ["{public_key}"]\n',
            encoding="utf-8",
        )
        return NodeConfig.load(config.dir)

    following = follow(authority.public_key)
    found = report(following, time.time())
    assert found.in_force is not None and found.in_force.serial == 3
    checks = [c for c in await run_checks(following) if c.name == "directory"]
    assert checks[0].level == "ok" and "serial 3" in checks[0].message

    # The directory lists this node without its signing key (it rotated; the authority
    # does not know yet): doctor says so, then is content once the entry is registered.
    stale_self = DirectoryEntry(region=OWN, name="衡阳市", url=config.url, keys=(key_of(OWN),))
    for serial, own_entry, level in (
        (4, stale_self, "warn"),
        (5, entry_of(await self_entry(config)), "ok"),
    ):
        listed = [*synthetic_entries(1), own_entry]
        token = signed_directory(
            authority, unsigned_directory(listed), serial=serial, now=time.time()
        )
        save_token(config, token.encode("ascii"))
        checks = [c for c in await run_checks(following) if c.name == "directory"]
        assert checks[0].level == level, checks[0].message
        assert ("directory_own_key_missing" in checks[0].message) == (level == "warn")
    status = run_cli("directory", "status", "--dir", str(config.dir), "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["in_force"]["serial"] == 5 and data["in_force"]["regions"] == 2

    # The authority's key was replaced in tongban.toml: the kept directory no longer counts.
    other = AuthorityKey(AUTHORITY, generate_private_key().public_key()).text()
    found = report(follow(other), time.time())
    assert found.in_force is None and found.kept_refused == "directory_unknown_key"
    status = run_cli("directory", "status", "--dir", str(config.dir))
    assert status.returncode == 1 and "directory_unknown_key" in status.stdout
