// 视频办, the citizen's page: ask (topic, phone, consent to recording), wait in the queue
// (position and estimated wait pushed by the node), talk with the clerk (two-way video through
// the node), rate the call. Outside opening hours: ask for a callback.
"use strict";
(function () {
  const MESSAGES = {
    queue_full: "当前排队人数已满，请稍后再试，或在服务时间外留下电话等待回电。",
    too_many_calls: "您发起视频咨询过于频繁，请稍后再试。",
    outside_hours: "当前不在服务时间，请刷新页面后留下电话等待回电。",
    call_over: "本次视频咨询已结束。",
    call_key_invalid: "无法进入该视频咨询，请重新发起。",
  };
  const show = (el, on) => el.classList.toggle("hidden", !on);
  const $ = (id) => document.getElementById(id);

  async function post(url, body) {
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    let data = {};
    try { data = await r.json(); } catch (e) { data = {}; }
    return { ok: r.ok, status: r.status, data };
  }
  function minutes(seconds) {
    if (!seconds) return "不到 1 分钟";
    const m = Math.ceil(seconds / 60);
    return `${m} 分钟`;
  }

  // -- outside opening hours: a callback -------------------------------------------------------
  const callbackForm = $("callback-form");
  if (callbackForm) {
    callbackForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = $("callback-result");
      const body = { phone: $("cb-phone").value.trim(), topic: $("cb-topic").value.trim() || null };
      if (callbackForm.dataset.item) body.item_code = callbackForm.dataset.item;
      const r = await post("/video/v1/callbacks", body);
      if (r.ok) { out.textContent = "已收到您的回电请求，工作人员将在服务时间内与您联系。"; out.className = "alert ok"; callbackForm.querySelector("button").disabled = true; }
      else { out.textContent = ((r.data.fields || [])[0] || {}).message || r.data.detail || "提交失败，请稍后再试。"; out.className = "alert error"; }
    });
  }

  const ask = $("ask");
  if (!ask) return;
  let stream = null, pc = null, chan = null, call = null, over = false;

  function cleanup() {
    if (pc) { pc.close(); pc = null; }
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  }
  function say(text, kind) { $("status").textContent = text; $("status").className = "status " + (kind || ""); }
  function appointment(msg) {
    const text = `已为您预约到窗口办理：${msg.at.replace("T", " ")}${msg.note ? "，" + msg.note : ""}。请按时携带材料前往。`;
    for (const id of ["appointment", "done-appointment"]) { $(id).textContent = text; show($(id), true); }
  }
  function finished() {
    if (over) return;
    forget();
    stop();
    if (chan) chan.close();
    show($("wait"), false); show($("call"), false); show($("done"), true);
  }
  function position(msg) {
    $("position").textContent = msg.position;
    $("ahead").textContent = Math.max(0, msg.position - 1);
    $("estimate").textContent = minutes(msg.estimate_s);
  }

  async function talk() {
    show($("wait"), false); show($("call"), true);
    $("reconnecting").classList.add("hidden");
    say("工作人员已接听，正在接通…");
    if (pc) { pc.close(); pc = null; }
    pc = new RTCPeerConnection({ iceServers: call.ice_servers || [] });
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    $("self").srcObject = stream;
    const remote = new MediaStream();
    $("remote").srcObject = remote;
    pc.ontrack = (event) => { remote.addTrack(event.track); };
    pc.onconnectionstatechange = () => {
      if (!pc) return;
      if (pc.connectionState === "connected") say(`已接通${call.clerk ? "：" + call.clerk : ""}。`, "ok");
      if (pc.connectionState === "disconnected") say("网络不稳定，正在恢复…", "bad");
      if (pc.connectionState === "failed") {
        // A new offer replaces the node's peer connection; over a socket that is still open,
        // or once it is back.
        say("连接中断，正在重新接通…", "bad");
        if (chan && chan.isOpen()) talk();
      }
    };
    try { await TongbanRTC.negotiate(chan, pc); }
    catch (err) { say(MESSAGES[err.code] || "接通失败，请稍后重试。", "bad"); }
  }

  function camera() {
    return navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: "user" }, width: { ideal: 1280 }, height: { ideal: 720 } }, audio: true });
  }
  function recordingNote(consent) {
    $("recording-note").textContent = consent ? "您已同意录音录像，本次通话将被录像。" : "本次通话不录音录像。";
  }

  // -- the call kept across a reload ------------------------------------------------------------
  // The call's id and key are kept in this tab's sessionStorage (gone with the tab, not shared
  // with other tabs or sent anywhere): a reloaded page joins again with them, and the node
  // keeps the place meanwhile (a page going away is treated as a lost connection).
  const KEPT = "tongban.videocall";
  function keep() {
    try { sessionStorage.setItem(KEPT, JSON.stringify({ id: call.id, key: call.key })); } catch (e) { /* storage off: no resuming */ }
  }
  function forget() {
    try { sessionStorage.removeItem(KEPT); } catch (e) { /* nothing kept */ }
  }
  function kept() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(KEPT) || "null");
      return saved && typeof saved.id === "string" && typeof saved.key === "string" ? saved : null;
    } catch (e) { return null; }
  }

  // Waits in (or comes back to) the call in ``call``; a refusal of the first join goes back to
  // the form with its message.
  async function enter() {
    show(ask, false); show($("wait"), true);
    $("self-preview").srcObject = stream;
    // Keep the socket busy so proxies do not drop it; the node's heartbeat does the rest.
    pinger = setInterval(() => { if (chan) chan.send({ type: "ping" }); }, 15000);
    const first = await connect();
    if (first && first.code) {
      forget();
      const error = $("ask-error");
      error.textContent = MESSAGES[first.code] || "连接失败，请稍后再试。";
      show(error, true); show(ask, true); show($("wait"), false);
      stop(); chan = null; over = false; joinedOnce = false;
    }
  }

  async function resume(saved) {
    call = { id: saved.id, key: saved.key };
    show(ask, false); show($("wait"), true);
    try {
      stream = await camera();
    } catch (e) {
      forget();
      show($("wait"), false); show(ask, true);
      $("ask-error").textContent = "无法打开摄像头或麦克风，本次视频咨询未能恢复。请允许本页使用摄像头和麦克风后重新发起。";
      show($("ask-error"), true);
      return;
    }
    await enter();
  }

  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("ask-error");
    show(error, false); show($("phone-error"), false);
    $("start").disabled = true;
    try {
      stream = await camera();
    } catch (e) {
      $("start").disabled = false;
      error.textContent = "无法打开摄像头或麦克风。请在浏览器设置中允许本页使用摄像头和麦克风后重试。";
      show(error, true);
      return;
    }
    const body = { consent: $("consent").checked };
    const topic = $("topic").value.trim(); if (topic) body.topic = topic;
    const phone = $("phone").value.trim(); if (phone) body.phone = phone;
    if (ask.dataset.item) body.item_code = ask.dataset.item;
    const r = await post("/video/v1/calls", body);
    $("start").disabled = false;
    if (!r.ok) {
      cleanup();
      const field = (r.data.fields || []).find((f) => f.field === "phone");
      if (field) { $("phone-error").textContent = field.message; show($("phone-error"), true); }
      error.textContent = MESSAGES[r.data.error] || r.data.detail || "暂时无法发起视频咨询，请稍后再试。";
      error.dataset.error = r.data.error || "";
      show(error, true);
      return;
    }
    call = { id: r.data.id, key: r.data.key };
    keep();
    position(r.data);
    recordingNote(body.consent);
    await enter();
  });

  // -- the socket, joined again after a lost connection -----------------------------------------
  // The node keeps the citizen's place (in the queue or in the call) for REJOIN_S seconds after
  // a socket lost without a close frame; the page joins again with the call's key meanwhile.
  const REJOIN_S = 20;
  let retry = 0, timer = null, lostAt = 0, pinger = null, joinedOnce = false;
  const url = () => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/video/v1/calls/${call.id}/ws`;

  function stop() {
    over = true;
    if (pinger) { clearInterval(pinger); pinger = null; }
    if (timer) { clearTimeout(timer); timer = null; }
    cleanup();
  }

  // Joins (again); returns the node's refusal if it refused, else null.
  async function connect() {
    const mine = TongbanRTC.channel(call.id, () => ({ type: "join", key: call.key }), () => {
      if (chan === mine) lost();
    }, url());
    chan = mine;
    mine.on("queue", position);
    mine.on("picked", (msg) => { call.clerk = msg.name; talk(); });
    mine.on("appointment", appointment);
    mine.on("ended", finished);
    let joined;
    try {
      joined = await mine.open();
    } catch (err) {
      if (err.code && err.code !== "closed") {
        if (joinedOnce) { say(MESSAGES[err.code] || MESSAGES.call_over, "bad"); finished(); }
        return err;
      }
      return null; // closed: lost() tries again
    }
    joinedOnce = true;
    retry = 0; lostAt = 0;
    call.ice_servers = joined.ice_servers;
    recordingNote(joined.consent);
    if (joined.status === "waiting") {
      $("reconnecting").classList.add("hidden");
      if (joined.position) position(joined);
    } else if (joined.status === "active") {
      call.clerk = joined.clerk_name || call.clerk;
      if (pc && (pc.connectionState === "connected" || pc.connectionState === "connecting")) {
        say(`已接通${call.clerk ? "：" + call.clerk : ""}。`, "ok");
      } else {
        talk();
      }
    }
    return null;
  }

  function lost() {
    if (over) return;
    if (!lostAt) lostAt = Date.now();
    if (Date.now() - lostAt > REJOIN_S * 1000) {
      say("与服务器的连接已断开，本次视频咨询已结束。", "bad");
      finished();
      return;
    }
    say("网络中断，正在重新连接…", "bad");
    $("reconnecting").classList.remove("hidden");
    if (timer) return;
    const delay = Math.min(4000, 500 * 2 ** retry++);
    timer = setTimeout(() => { timer = null; if (!over) connect(); }, delay);
  }
  window.addEventListener("online", () => {
    if (!over && lostAt && !timer) { retry = 0; lost(); }
  });

  $("cancel").addEventListener("click", () => {
    forget();
    stop();
    const leaving = chan;
    chan = null; // its close is no lost connection
    if (leaving) { leaving.send({ type: "bye" }); leaving.close(); }
    show($("wait"), false); show(ask, true);
    $("ask-error").textContent = "您已离开排队。"; show($("ask-error"), true);
    over = false; joinedOnce = false; lostAt = 0; retry = 0;
  });
  $("hangup").addEventListener("click", () => {
    if (chan) chan.send({ type: "bye" });
    finished();
  });

  const saved = kept();
  if (saved) resume(saved);

  $("rate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = $("rate-result");
    const chosen = document.querySelector('#rate-form input[name="level"]:checked');
    const body = { key: call.key, level: chosen ? Number(chosen.value) : null };
    const comment = $("comment").value.trim(); if (comment) body.comment = comment;
    const r = await post(`/video/v1/calls/${call.id}/rating`, body);
    if (r.ok) { out.textContent = "感谢您的评价！"; out.className = "alert ok"; $("rate-form").querySelector("button").disabled = true; }
    else { out.textContent = ((r.data.fields || [])[0] || {}).message || r.data.detail || "提交失败"; out.className = "alert error"; }
  });
})();
