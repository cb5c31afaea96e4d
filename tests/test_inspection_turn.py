"""A video inspection whose media can only flow through a real TURN relay: Debian's coturn
(`/usr/bin/turnserver`, the server of docker/compose.yaml) run by the test as its own child
process on 127.0.0.1 and a free port, with `use-auth-secret` and the same secret as the
handling node's `[inspection] turn_secret`. The node's own peer allocates on it with the
time-limited credentials it computes; the participants join with the credentials the node
handed them in `joined` and with the relay transport policy (aioice then gathers no host
candidates at all), so every packet between a participant and the node passes coturn."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aioice import stun
from aioice.ice import CandidatePair
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)

from inspection.media import probe
from node.appkeys import HUB
from node.config import CONFIG_FILE, NodeConfig
from tests.support.api import ApiClient
from tests.support.databases import DatabaseFactory
from tests.support.inspections import accepted_case, schedule, ws_url
from tests.support.media import Client
from tests.support.nodes import RunningNode, free_port, make_configs, terminate
from tests.support.regions import fetch_partner_catalogues, provision
from tests.support.waiting import wait_until

TURNSERVER = shutil.which("turnserver") or (
    "/usr/bin/turnserver" if os.access("/usr/bin/turnserver", os.X_OK) else None
)
REALM = "tongban.test"

#: scripts/system installs coturn, so on CI a missing turnserver fails (in the fixture) rather
#: than skips.
pytestmark = pytest.mark.skipif(
    TURNSERVER is None and not os.environ.get("CI"),
    reason="needs coturn's turnserver (Debian: apt-get install coturn; scripts/system does)",
)


@dataclass
class Turn:
    port: int
    secret: str
    log: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _answers_stun(port: int) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(bytes(request), ("127.0.0.1", port))
            answer = stun.parse_message(sock.recv(2048))
        except (OSError, ValueError):
            return False
    return answer.transaction_id == request.transaction_id


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[Turn]:
    """coturn on 127.0.0.1 as a child of the test, with a config file of its own (`-c`: the
    system's /etc/turnserver.conf and any coturn service are not involved)."""
    if TURNSERVER is None:
        pytest.fail("turnserver not found, although scripts/system installs coturn on CI")
    folder = tmp_path / "coturn"
    folder.mkdir()
    port = free_port()
    secret = secrets.token_hex(16)
    log = folder / "turnserver.log"
    conf = folder / "turnserver.conf"
    conf.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                f"listening-port={port}",
                "relay-ip=127.0.0.1",
                # Both ends of the test are on this host: coturn refuses loopback peers unless
                # told (production denies them, docker/coturn/turnserver.conf).
                "allow-loopback-peers",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                f"realm={REALM}",
                "fingerprint",
                "no-tls",
                "no-dtls",
                "no-cli",
                f"log-file={log}",
                "simple-log",
                "verbose",  # sessions: allocations, and the bytes relayed when they close
                "no-stdout-log",
                f"pidfile={folder / 'turnserver.pid'}",
                f"userdb={folder / 'turndb'}",
            ]
        )
        + "\n"
    )
    with open(folder / "turnserver.out", "wb") as out:
        proc = subprocess.Popen(
            [TURNSERVER, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, cwd=folder
        )
    try:
        deadline = time.monotonic() + 15
        while not _answers_stun(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"turnserver did not come up (exit {proc.poll()}):\n"
                    + (folder / "turnserver.out").read_text(errors="replace")[-2000:]
                    + Turn(port, secret, log).log_text()[-2000:]
                )
            time.sleep(0.1)
        yield Turn(port, secret, log)
    finally:
        terminate(proc)


@pytest.fixture
async def regions(
    tmp_path: Path, databases: DatabaseFactory, turn: Turn
) -> AsyncIterator[list[RunningNode]]:
    """衡阳市 (the window) and 邵阳县 (inspects), 邵阳县 with coturn in `[inspection]`."""
    configs = await make_configs(tmp_path, databases, [("430400", "衡阳市"), ("430523", "邵阳县")])
    path = configs[1].dir / CONFIG_FILE
    path.write_text(
        path.read_text(encoding="utf-8")
        + f'\n[inspection]\nturn_urls = ["{turn.url}"]\nturn_secret = "{turn.secret}"\n',
        encoding="utf-8",
    )
    configs[1] = NodeConfig.load(configs[1].dir)
    assert configs[1].inspection.turn_secret == turn.secret
    for config in configs:
        await provision(config)
    nodes = [await RunningNode(c).start() for c in configs]
    try:
        await fetch_partner_catalogues(nodes)
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


class RelayOnlyClient(Client):
    """A participant whose peer connection uses the ICE servers handed out in `joined`, with
    the relay transport policy (aiortc 1.16 / aioice 0.13: only relayed candidates are
    gathered, remote candidates pair with them alone)."""

    async def connect(self) -> None:
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in self.joined["ice_servers"]
        ]
        self.configuration = RTCConfiguration(
            iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY
        )
        await super().connect()


def _selected(pc: RTCPeerConnection | None) -> CandidatePair:
    """The ICE candidate pair a peer connection sends and receives on (bundled: one)."""
    assert pc is not None
    connections = {id(t.sender.transport.transport._connection): t for t in pc.getTransceivers()}
    assert len(connections) == 1, "expected one bundled transport"
    transceiver = next(iter(connections.values()))
    nominated = transceiver.sender.transport.transport._connection._nominated
    assert 1 in nominated, "no candidate pair selected"
    return nominated[1]


def _video_bytes(path: Path) -> int:
    """The bytes of the encoded video frames in a recording."""
    with av.open(str(path)) as container:
        return sum(packet.size for packet in container.demux(video=0))


def _candidate_types(sdp: str) -> set[str]:
    return set(re.findall(r"^a=candidate:.* typ (\w+)", sdp, re.MULTILINE))


async def _true(value: bool) -> bool:
    return value


async def test_media_flows_through_coturn_with_time_limited_credentials(
    regions: list[RunningNode], turn: Turn
) -> None:
    hengyang, shaoyang = regions
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        approver = await ApiClient(shaoyang.url, http).login("approver")
        inspector = await ApiClient(shaoyang.url, http).login("inspector")
        case_no, handling_id, receiving_id = await accepted_case(clerk, approver)
        case = await schedule(approver, clerk, case_no, handling_id, receiving_id)
        url = ws_url(shaoyang, case.session_id)
        applicant = RelayOnlyClient(
            http, url, {"type": "join", "token": case.token}, receive_video=True
        )
        insp = RelayOnlyClient(
            http, url, {"type": "join", "auth": inspector.token}, video=False, receive_video=True
        )
        base = f"/inspection/v1/sessions/{case.session_id}"
        try:
            joined = await applicant.open()
            assert joined["type"] == "joined", joined
            # The node hands out coturn REST API credentials: "<expiry>:tongban" and the
            # base64 HMAC-SHA1 of it under the shared secret, valid for 12 h.
            (server,) = joined["ice_servers"]
            assert server["urls"] == [turn.url]
            username = server["username"]
            expiry, _, label = username.partition(":")
            assert label == "tongban" and int(expiry) > time.time() + 11 * 3600
            digest = hmac.new(turn.secret.encode(), username.encode(), hashlib.sha1).digest()
            assert server["credential"] == base64.b64encode(digest).decode()

            await applicant.connect()
            assert applicant.pc is not None
            offered = _candidate_types(applicant.pc.localDescription.sdp)
            assert offered == {"relay"}, offered
            assert (await insp.open())["role"] == "inspector"
            await insp.connect()
            assert insp.pc is not None
            assert _candidate_types(insp.pc.localDescription.sdp) == {"relay"}

            # Media both ways: the node records the applicant's video and relays it to the
            # inspector; the inspector's audio reaches the applicant.
            await wait_until(
                lambda: _true(insp.received["video"] >= 30 and applicant.received["audio"] >= 50),
                timeout=30,
            )
            recording = shaoyang.config.dir / "inspections" / case.session_id / "recording-01.webm"
            size = recording.stat().st_size
            await wait_until(lambda: _true(recording.stat().st_size > size + 3_000))

            # The pairs in use: each participant sends from its relayed candidate on coturn,
            # and the node's peer talks to exactly that relayed address.
            assert shaoyang.app is not None
            live = shaoyang.app[HUB].sessions[case.session_id]
            mapped: dict[str, str] = {}  # the address coturn sees each participant at
            for client, key in ((applicant, "applicant"), (insp, "staff:inspector")):
                mine = _selected(client.pc)
                host, port = mine.protocol.transport.get_extra_info("related_address")
                mapped[key] = f"{host}:{port}"
                assert mine.local_candidate.type == "relay", mine
                assert mine.local_candidate.host == "127.0.0.1"
                node_pc = live.participants[key].pc
                assert node_pc is not None
                # The node's peer uses exactly the configured server (no default STUN) and
                # got its own allocation with the credentials it computes.
                ice = node_pc.getTransceivers()[0].sender.transport.transport._connection
                assert (ice.stun_server, ice.turn_server) == (None, ("127.0.0.1", turn.port))
                assert "relay" in _candidate_types(node_pc.localDescription.sdp)
                theirs = _selected(node_pc)
                assert theirs.remote_candidate.type == "relay", theirs
                assert theirs.remote_addr == mine.local_addr
                if theirs.local_candidate.type == "relay":  # the node's own allocation
                    assert theirs.local_addr == mine.remote_addr

            summary = await inspector.ok(
                "POST",
                f"{base}/end",
                {"result": "pass", "record": "经 TURN 中继完成视频勘验。"},
            )
        finally:
            await applicant.close()
            await insp.close()

    (stored,) = [f for f in summary["files"] if f["kind"] == "recording"]
    info = await asyncio.to_thread(probe, shaoyang.fed.blobs.path(stored["sha256"]))
    assert info.video_frames >= 30 and (info.width, info.height) == (640, 480)
    video_bytes = await asyncio.to_thread(_video_bytes, shaoyang.fed.blobs.path(stored["sha256"]))

    # coturn authenticated the participants' time-limited user and gave it allocations
    # (the node's own peers allocate with a user of the same form); when the peers closed, it
    # logged what each allocation relayed: the applicant's sent its peer (the node) more than
    # the video the node recorded (the synthetic picture is still: VP8 makes it small), the
    # inspector's carried traffic both ways.
    def allocations() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        log = turn.log_text()
        for session, user, rb, sb in re.findall(
            r"session (\d+): peer usage: realm=<[^>]*>, username=<([^>]*)>, "
            r"rp=\d+, rb=(\d+), sp=\d+, sb=(\d+)",
            log,
        ):
            found[session] = {"user": user, "rb": int(rb), "sb": int(sb)}
        for session, remote in re.findall(
            r"session (\d+): closed \(2nd stage\), .*? remote ([0-9.]+:\d+)", log
        ):
            if session in found:
                found[session]["remote"] = remote
        return {a["remote"]: a for a in found.values() if "remote" in a}

    await wait_until(
        lambda: _true(all(address in allocations() for address in mapped.values())), timeout=15
    )
    closed = allocations()
    sent = closed[mapped["applicant"]]
    assert sent["user"] == username and sent["sb"] > video_bytes > 0, (sent, video_bytes)
    received = closed[mapped["staff:inspector"]]
    assert received["rb"] > 0 and received["sb"] > 0, received
    log = turn.log_text()
    allocated = re.findall(r"user <([^>]*)>: incoming packet ALLOCATE processed, success", log)
    assert username in allocated, log[-3000:]
    assert len(allocated) >= 3, allocated  # two participants and the node's peers
    assert all(re.fullmatch(r"\d+:tongban", user) for user in allocated), allocated
