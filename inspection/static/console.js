// The inspector console: live video and audio of the applicant, my microphone (and camera on
// request) to them, checklist, snapshots, the applicant's location, end and sign.
"use strict";
(function () {
  const root = document.getElementById("console");
  if (!root) return;
  const session = root.dataset.session;
  const meeting = root.dataset.kind === "meeting";
  const base = `/inspection/v1/sessions/${session}`;
  const statusEl = document.getElementById("status");
  const video = document.getElementById("remote");
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  let pc = null, chan = null, mic = null, cam = null, ended = false, retry = 0, timer = null;
  function say(text, kind) { statusEl.textContent = text; statusEl.className = "status " + (kind || ""); }

  async function api(method, url, body) {
    const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/json" } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const r = await fetch(url, init);
    let data = {};
    try { data = await r.json(); } catch (e) { data = {}; }
    return { ok: r.ok, status: r.status, data };
  }

  async function connect() {
    say("正在连接…");
    chan = TongbanRTC.channel(session, () => ({ type: "join" }), () => { if (!ended) reconnectSoon(); });
    let joined;
    try { joined = await chan.open(); }
    catch (err) {
      // session_elsewhere: served by another replica for a moment; the socket's close brings
      // the next try.
      if (err.code === "session_elsewhere") { say("正在连接会话，请稍候…"); return; }
      if (err.code && err.code !== "closed") { say(`无法加入：${err.detail || err.code}`, "bad"); ended = true; }
      return;
    }
    chan.on("location", showLocation);
    chan.on("peer", (msg) => {
      if (msg.who === "applicant") say(msg.state === "left" ? "申请人已断开，录像分段已保存。" : msg.state === "connected" ? "申请人已接入。" : "申请人已加入，正在建立连接…", msg.state === "left" ? "bad" : "ok");
    });
    chan.on("snapshot", (msg) => addThumb(msg.snapshot));
    chan.on("ended", () => {  // ended and signed by another staff member taking part
      ended = true;
      if (pc) pc.close();
      say(meeting ? "云见面已结束，记录已签署。" : "勘验已结束，笔录已签署。", "ok");
      root.querySelectorAll("input, select, textarea, button").forEach((el) => { el.disabled = true; });
    });
    if (joined.session && joined.session.location) showLocation(joined.session.location);
    if (!mic) {
      try { mic = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) { mic = null; }
    }
    if (pc) pc.close();
    pc = new RTCPeerConnection({ iceServers: joined.ice_servers || [] });
    if (mic) mic.getTracks().forEach((t) => pc.addTrack(t, mic)); else pc.addTransceiver("audio", { direction: "recvonly" });
    if (cam) pc.addTransceiver(cam.getVideoTracks()[0], { direction: "sendrecv", streams: [cam] });
    else pc.addTransceiver("video", { direction: "recvonly" });
    const remote = new MediaStream();
    video.srcObject = remote;
    pc.ontrack = (event) => { remote.addTrack(event.track); };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") { retry = 0; say("已连接。", "ok"); }
      if (pc.connectionState === "failed") reconnectSoon();
    };
    try { await TongbanRTC.negotiate(chan, pc); }
    catch (err) { say(`连接失败：${err.detail || err.code || ""}`, "bad"); reconnectSoon(); }
  }

  function reconnectSoon() {
    if (ended || timer) return;
    const delay = Math.min(8000, 500 * 2 ** retry++);
    say("连接中断，正在重新连接…", "bad");
    timer = setTimeout(() => { timer = null; if (chan) chan.close(); connect(); }, delay);
  }

  function showLocation(loc) {
    const el = document.getElementById("location");
    const at = new Date((loc.at || Date.now() / 1000) * 1000).toLocaleTimeString("zh-CN");
    el.textContent = `纬度 ${loc.latitude}，经度 ${loc.longitude}（精度约 ${Math.round(loc.accuracy_m || 0)} 米，${at}）`;
    el.classList.remove("muted");
  }

  function addThumb(shot) {
    const box = document.getElementById("snapshots");
    if (box.querySelector(`[data-sha="${shot.sha256}"]`)) return;
    const fig = document.createElement("figure");
    fig.dataset.sha = shot.sha256;
    const img = document.createElement("img");
    img.src = `${base}/files/${shot.sha256}`; img.alt = shot.name;
    const cap = document.createElement("figcaption");
    const loc = shot.data && shot.data.location;
    cap.textContent = `${shot.name} ${new Date(shot.taken_at * 1000).toLocaleTimeString("zh-CN")}` + (loc ? ` · ${loc.latitude},${loc.longitude}` : "");
    fig.append(img, cap);
    box.appendChild(fig);
  }

  document.getElementById("snapshot").addEventListener("click", async () => {
    const r = await api("POST", `${base}/snapshots`, {});
    if (r.ok) { addThumb(r.data); say("已截图。", "ok"); } else say(r.data.detail || "截图失败", "bad");
  });

  document.getElementById("my-camera").addEventListener("change", async (event) => {
    if (event.target.checked) {
      try { cam = await navigator.mediaDevices.getUserMedia({ video: true }); } catch (e) { cam = null; event.target.checked = false; return; }
    } else if (cam) { cam.getTracks().forEach((t) => t.stop()); cam = null; }
    if (chan) { chan.close(); } // renegotiate with (or without) my camera
  });

  document.querySelectorAll(".checklist li").forEach((li) => {
    const index = li.dataset.index;
    const save = async () => {
      const chosen = li.querySelector("input[type=radio]:checked");
      if (!chosen) return;
      const r = await api("PUT", `${base}/checklist/${index}`, { result: chosen.value, note: li.querySelector(".note").value });
      li.classList.toggle("saved", r.ok);
      if (!r.ok) say(r.data.detail || "保存失败", "bad");
    };
    li.querySelectorAll("input[type=radio]").forEach((el) => el.addEventListener("change", save));
    li.querySelector(".note").addEventListener("change", save);
  });

  document.getElementById("end").addEventListener("click", async () => {
    const result = document.getElementById("result").value;
    const record = document.getElementById("record").value;
    if (!record && result !== "aborted") { say(meeting ? "请先填写记录。" : "请先填写笔录。", "bad"); return; }
    if (!confirm(meeting ? "结束云见面并签署记录？结束后不能继续。" : "结束勘验并签署笔录？结束后不能继续。")) return;
    const r = await api("POST", `${base}/end`, { result, record, findings: document.getElementById("findings").value });
    const out = document.getElementById("end-result");
    if (r.ok) {
      ended = true;
      if (pc) pc.close();
      out.textContent = `已签署。证据清单 ${r.data.manifest.slice(0, 16)}…，共 ${r.data.files.length} 个文件，已发送至收件地。`;
      out.className = "alert ok";
      say(meeting ? "云见面已结束。" : "勘验已结束。", "ok");
      root.querySelectorAll("input, select, textarea, button").forEach((el) => { el.disabled = true; });
    } else {
      out.textContent = r.data.detail || "签署失败";
      out.className = "alert error";
    }
  });

  connect();
})();
