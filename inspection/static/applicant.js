// The applicant's page (a phone at the site): rear camera first, clear prompts, location with
// consent, and reconnects after a lost network with the resume key from the first join.
"use strict";
(function () {
  const intro = document.getElementById("intro");
  if (!intro) return;
  const session = intro.dataset.session;
  // A 云见面 faces the person (front camera); a site inspection shows the site (rear camera).
  const meeting = intro.dataset.kind === "meeting";
  const what = meeting ? "云见面" : "勘验";
  const start = document.getElementById("start");
  if (!start) return;
  const call = document.getElementById("call");
  const statusEl = document.getElementById("status");
  const selfVideo = document.getElementById("self");
  const remoteVideo = document.getElementById("remote");
  const remoteAudio = document.getElementById("remote-audio");
  const cameraSel = document.getElementById("camera");
  const locationEl = document.getElementById("location");
  const resumeKey = `tongban-resume-${session}`;
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) history.replaceState(null, "", location.pathname); // keep it out of history
  let stream = null, pc = null, chan = null, ended = false, retry = 0, lastLocation = 0;
  let latest = null;

  const MESSAGES = {
    token_used: "该邀请码已使用。请在第一次打开的手机上继续，或联系窗口重新获取二维码。",
    token_expired: "邀请码已过期，请联系窗口重新获取。",
    token_wrong_session: `该邀请码不属于本次${what}，请核对二维码。`,
    token_invalid: "邀请码无效，请重新扫描窗口提供的二维码。",
    token_malformed: "邀请码不完整，请重新扫描二维码。",
    token_missing: "缺少邀请码，请扫描窗口提供的二维码。",
    resume_invalid: "无法恢复连接，请重新扫描二维码。",
    session_ended: `本次${what}已结束。`,
  };
  function say(text, kind) { statusEl.textContent = text; statusEl.className = "status " + (kind || ""); }

  async function openCamera(deviceId) {
    const video = deviceId ? { deviceId: { exact: deviceId } } : { facingMode: { ideal: meeting ? "user" : "environment" } };
    video.width = { ideal: 1280 }; video.height = { ideal: 720 };
    const s = await navigator.mediaDevices.getUserMedia({ video, audio: true });
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = s;
    selfVideo.srcObject = stream;
    return stream;
  }

  async function listCameras() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const cams = devices.filter((d) => d.kind === "videoinput");
    const current = stream && stream.getVideoTracks()[0] && stream.getVideoTracks()[0].getSettings().deviceId;
    // Rear cameras first: labels say "back"/"后" on most phones.
    cams.sort((a, b) => (/back|rear|后/i.test(b.label) ? 1 : 0) - (/back|rear|后/i.test(a.label) ? 1 : 0));
    cameraSel.innerHTML = "";
    cams.forEach((cam, i) => {
      const opt = document.createElement("option");
      opt.value = cam.deviceId; opt.textContent = cam.label || `摄像头 ${i + 1}`;
      if (cam.deviceId === current) opt.selected = true;
      cameraSel.appendChild(opt);
    });
  }

  cameraSel.addEventListener("change", async () => {
    await openCamera(cameraSel.value);
    if (pc) {
      const sender = pc.getSenders().find((s) => s.track && s.track.kind === "video");
      if (sender) await sender.replaceTrack(stream.getVideoTracks()[0]);
      const audio = pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      if (audio) await audio.replaceTrack(stream.getAudioTracks()[0]);
    }
  });

  function shareLocation() {
    if (!document.getElementById("share-location").checked || !navigator.geolocation) {
      locationEl.textContent = "未共享位置。";
      return;
    }
    navigator.geolocation.watchPosition((pos) => {
      latest = pos.coords;
      locationEl.textContent = `已共享位置（精度约 ${Math.round(pos.coords.accuracy)} 米）`;
      sendLocation();
    }, () => { locationEl.textContent = "无法获取位置，请在浏览器中允许定位。"; }, { enableHighAccuracy: true });
  }
  function sendLocation(force) {
    if (!latest || !chan) return;
    const now = Date.now();
    if (!force && now - lastLocation < 10000) return;
    lastLocation = now;
    chan.send({ type: "location", latitude: latest.latitude, longitude: latest.longitude, accuracy: latest.accuracy });
  }

  function joinMessage() {
    const resume = localStorage.getItem(resumeKey);
    return resume ? { type: "join", resume } : { type: "join", token };
  }

  async function connect() {
    say("正在连接工作人员…");
    chan = TongbanRTC.channel(session, joinMessage, () => { if (!ended) reconnectSoon(); });
    let joined;
    try {
      joined = await chan.open();
    } catch (err) {
      if (err.code === "session_elsewhere") {
        // Served by another replica for a moment (docs/inspection.md): the socket's close
        // brings the next try.
        say("正在连接工作人员，请稍候…");
        return;
      }
      if (err.code && err.code !== "closed") {
        if (err.code === "resume_invalid") localStorage.removeItem(resumeKey);
        ended = MESSAGES[err.code] !== undefined && err.code !== "resume_invalid" || err.code === "token_used";
        say(MESSAGES[err.code] || "连接失败，请稍后重试。", "bad");
      }
      return;
    }
    if (joined.resume) localStorage.setItem(resumeKey, joined.resume);
    chan.on("ended", () => { ended = true; say(`${what}已结束，感谢您的配合。您可以关闭本页。`, "ok"); cleanup(); localStorage.removeItem(resumeKey); });
    let staffHere = ((joined.session || {}).participants || []).some((p) => p.role === "inspector" && p.connected);
    const connectedText = () => (staffHere ? "工作人员已接入，请按语音指引展示现场。" : "已连接，请等待工作人员接入。");
    chan.on("peer", (msg) => {
      if (msg.who !== "inspector") return;
      staffHere = msg.state === "connected";
      if (pc && pc.connectionState === "connected") say(staffHere ? connectedText() : "工作人员暂时离开，请稍候。", staffHere ? "ok" : "");
    });
    if (pc) pc.close();
    pc = new RTCPeerConnection({ iceServers: joined.ice_servers || [] });
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    pc.ontrack = (event) => {
      if (event.track.kind === "audio") { remoteAudio.srcObject = new MediaStream([event.track]); }
      else {
        // Shown only once the inspector really shares a camera (the track unmutes).
        remoteVideo.srcObject = new MediaStream([event.track]);
        event.track.onunmute = () => remoteVideo.classList.remove("hidden");
        event.track.onmute = () => remoteVideo.classList.add("hidden");
      }
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") { retry = 0; say(connectedText(), "ok"); sendLocation(true); }
      if (pc.connectionState === "failed") reconnectSoon();
      if (pc.connectionState === "disconnected") say("网络不稳定，正在恢复…", "bad");
    };
    try {
      await TongbanRTC.negotiate(chan, pc);
    } catch (err) {
      say(MESSAGES[err.code] || "连接失败，正在重试…", "bad");
      reconnectSoon();
    }
  }

  let timer = null;
  function reconnectSoon() {
    if (ended || timer) return;
    say("网络中断，正在重新连接…", "bad");
    const delay = Math.min(8000, 500 * 2 ** retry++);
    timer = setTimeout(() => { timer = null; if (chan) chan.close(); connect(); }, delay);
  }
  window.addEventListener("online", () => { if (!ended && (!pc || pc.connectionState !== "connected")) { retry = 0; reconnectSoon(); } });

  function cleanup() {
    if (pc) pc.close();
    if (stream) stream.getTracks().forEach((t) => t.stop());
  }

  document.getElementById("leave").addEventListener("click", () => {
    ended = true;
    if (chan) chan.send({ type: "bye" });
    cleanup();
    say("您已离开。如需继续，请刷新本页。");
  });

  start.addEventListener("click", async () => {
    start.disabled = true;
    try {
      await openCamera();
    } catch (err) {
      start.disabled = false;
      alert("无法打开摄像头或麦克风。请在浏览器设置中允许本页使用摄像头和麦克风后重试。");
      return;
    }
    intro.classList.add("hidden");
    call.classList.remove("hidden");
    await listCameras();
    shareLocation();
    connect();
  });
})();
