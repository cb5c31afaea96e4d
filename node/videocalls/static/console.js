// 视频办 call console (the clerk): two-way video with the citizen through the node, photos of
// documents at the resolution the camera sends, 预约 and 视频收件, end of the call.
"use strict";
(function () {
  const root = document.getElementById("console");
  if (!root) return;
  const id = root.dataset.call;
  const base = `/video/v1/calls/${id}`;
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const statusEl = document.getElementById("status");
  let pc = null, chan = null, media = null, ended = root.dataset.live !== "1";
  function say(text, kind) { statusEl.textContent = text; statusEl.className = "status " + (kind || ""); }
  async function api(method, url, body) {
    const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/json" } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const r = await fetch(url, init);
    let data = {};
    try { data = await r.json(); } catch (e) { data = {}; }
    return { ok: r.ok, status: r.status, data };
  }
  function firstError(r) { return ((r.data.fields || [])[0] || {}).message || r.data.detail || "操作失败"; }
  function over(text) {
    ended = true;
    if (pc) pc.close();
    if (media) media.getTracks().forEach((t) => t.stop());
    say(text, "ok");
    document.getElementById("snapshot").disabled = true;
    document.getElementById("end").disabled = true;
  }

  function addThumb(shot) {
    const box = document.getElementById("snapshots");
    if (box.querySelector(`[data-sha="${shot.sha256}"]`)) return;
    const fig = document.createElement("figure");
    fig.dataset.sha = shot.sha256;
    const link = document.createElement("a");
    link.href = `${base}/files/${shot.sha256}`; link.target = "_blank"; link.rel = "noopener";
    const img = document.createElement("img");
    img.src = link.href; img.alt = shot.name;
    link.append(img);
    const cap = document.createElement("figcaption");
    cap.textContent = `${shot.name} ${shot.data.width}×${shot.data.height}`;
    fig.append(link, cap);
    box.append(fig);
  }

  async function connect() {
    say("正在连接…");
    chan = TongbanRTC.channel(id, () => ({ type: "join" }), () => { if (!ended) say("与服务器的连接已断开，请刷新页面。", "bad"); },
      `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${base}/ws`);
    chan.on("peer", (msg) => {
      if (msg.who !== "applicant") return;
      if (msg.state === "connected") say("群众已接通。", "ok");
      else if (msg.state === "left") say("群众已断开。", "bad");
    });
    chan.on("snapshot", (msg) => addThumb(msg.snapshot));
    chan.on("ended", () => over("通话已结束。"));
    let joined;
    try { joined = await chan.open(); }
    catch (err) { say(`无法加入：${err.detail || err.code}`, "bad"); return; }
    try { media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true }); }
    catch (e) { media = null; }
    pc = new RTCPeerConnection({ iceServers: joined.ice_servers || [] });
    if (media) media.getTracks().forEach((t) => pc.addTrack(t, media));
    else { pc.addTransceiver("audio", { direction: "recvonly" }); pc.addTransceiver("video", { direction: "recvonly" }); }
    document.getElementById("self").srcObject = media;
    const remote = new MediaStream();
    document.getElementById("remote").srcObject = remote;
    pc.ontrack = (event) => { remote.addTrack(event.track); };
    pc.onconnectionstatechange = () => { if (pc && pc.connectionState === "connected") say(joined.citizen_here ? "已接通。" : "已连接，等待群众接入…", "ok"); };
    try { await TongbanRTC.negotiate(chan, pc); }
    catch (err) { say(`连接失败：${err.detail || err.code || ""}`, "bad"); }
  }

  document.getElementById("snapshot").addEventListener("click", async () => {
    const r = await api("POST", `${base}/snapshots`, {});
    if (r.ok) { addThumb(r.data); say(`已拍照（${r.data.data.width}×${r.data.data.height}）。`, "ok"); }
    else say(firstError(r), "bad");
  });
  document.getElementById("end").addEventListener("click", async () => {
    const r = await api("POST", `${base}/end`, {});
    if (r.ok) over("通话已结束。"); else say(firstError(r), "bad");
  });
  document.getElementById("appointment-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = document.getElementById("appointment-result");
    const r = await api("POST", `${base}/appointment`, { at: document.getElementById("appointment-at").value, note: document.getElementById("appointment-note").value.trim() || null });
    out.textContent = r.ok ? `已预约：${r.data.at.replace("T", " ")} ${r.data.note || ""}` : firstError(r);
    out.className = r.ok ? "alert ok" : "alert error";
  });
  const application = document.getElementById("application-form");
  if (application) application.addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = document.getElementById("application-result");
    const r = await api("POST", `${base}/application`, { item_code: document.getElementById("application-item").value.trim() });
    if (r.ok) { window.open(r.data.url, "_blank", "noopener"); out.textContent = `已在新窗口打开收件页面（${r.data.files} 张截图已作为上传文件）。`; out.className = "alert ok"; }
    else { out.textContent = firstError(r); out.className = "alert error"; }
  });

  const showPhone = document.getElementById("show-phone");
  if (showPhone) showPhone.addEventListener("click", async () => {
    const r = await api("POST", `${base}/phone`, {});
    document.getElementById("phone-shown").textContent = r.ok ? r.data.phone : firstError(r);
  });

  if (!ended) connect();
})();
