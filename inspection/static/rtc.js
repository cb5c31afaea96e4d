// Shared by the applicant page and the inspector console: the signalling socket with
// reconnects, and a non-trickle offer (all ICE candidates in the SDP, as the node expects).
"use strict";
window.TongbanRTC = (function () {
  function wsUrl(session) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/inspection/${session}/ws`;
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000); // enough candidates by then
    });
  }

  // A signalling channel: join() resolves with the node's "joined"; on(type, fn) for pushes;
  // request(msg, type) sends and waits for the reply of that type (or an error). ``url``: a
  // socket other than the inspection's (视频办 calls).
  function channel(session, joinMessage, onClose, url) {
    const handlers = {};
    let pending = null;
    let ws = null;
    function open() {
      return new Promise((resolve, reject) => {
        ws = new WebSocket(url || wsUrl(session));
        ws.onopen = () => ws.send(JSON.stringify(joinMessage()));
        ws.onmessage = (event) => {
          const msg = JSON.parse(event.data);
          if (msg.type === "joined") { resolve(msg); return; }
          if (pending && (msg.type === pending.type || msg.type === "error")) {
            const p = pending; pending = null; p.resolve(msg); return;
          }
          if (msg.type === "error" && !handlers.joinedOnce) { reject(msg); return; }
          (handlers[msg.type] || []).forEach((fn) => fn(msg));
        };
        ws.onclose = (event) => { if (pending) { pending.resolve({ type: "error", code: "closed" }); pending = null; } reject({ code: "closed" }); onClose(event); };
      });
    }
    return {
      open: async () => { const joined = await open(); handlers.joinedOnce = true; return joined; },
      on: (type, fn) => { (handlers[type] = handlers[type] || []).push(fn); },
      send: (msg) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg)); },
      request: (msg, type) => new Promise((resolve) => { pending = { type, resolve }; ws.send(JSON.stringify(msg)); }),
      close: () => { if (ws) ws.close(); },
      isOpen: () => ws && ws.readyState === 1,
    };
  }

  async function negotiate(chan, pc) {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const reply = await chan.request({ type: "offer", sdp: pc.localDescription.sdp }, "answer");
    if (reply.type !== "answer") throw reply;
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
  }

  return { channel, negotiate };
})();
