// 视频办 desk: the queue (refreshed every 2 s), pick a call up, opt in or out (clerks), and
// the callbacks asked for.
"use strict";
(function () {
  const desk = document.getElementById("desk");
  if (!desk) return;
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const status = document.getElementById("desk-status");
  const body = document.querySelector("#queue tbody");
  async function api(method, url, data) {
    const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/json" } };
    if (data !== undefined) init.body = JSON.stringify(data);
    const r = await fetch(url, init);
    let out = {};
    try { out = await r.json(); } catch (e) { out = {}; }
    return { ok: r.ok, status: r.status, data: out };
  }
  function cell(row, label, text) {
    const td = document.createElement("td");
    td.dataset.label = label; td.textContent = text;
    row.append(td);
    return td;
  }
  function waited(s) { return s < 60 ? `${s} 秒` : `${Math.floor(s / 60)} 分 ${s % 60} 秒`; }

  function answerButton(id) {
    const button = document.createElement("button");
    button.type = "button"; button.className = "primary"; button.textContent = "接听";
    button.addEventListener("click", async () => {
      button.disabled = true;
      const p = await api("POST", `/video/v1/calls/${id}/pick`);
      if (p.ok) location.href = p.data.console;
      else { status.textContent = p.data.detail || "接听失败"; button.disabled = false; refresh(); }
    });
    return button;
  }

  async function refresh() {
    const r = await api("GET", "/video/v1/queue");
    if (!r.ok) { status.textContent = r.data.detail || "无法读取排队"; return; }
    body.replaceChildren();
    for (const w of r.data.waiting) {
      const tr = document.createElement("tr");
      tr.dataset.call = w.id;
      cell(tr, "位置", `第 ${w.position} 位${w.connected ? "" : "（暂未连接）"}`);
      cell(tr, "已等待", waited(w.waiting_s));
      cell(tr, "咨询内容", w.topic || "（未填写）");
      cell(tr, "事项", w.item_code || "—");
      cell(tr, "录像", w.consent ? "同意" : "不同意");
      cell(tr, "回电号码", w.phone || "—");
      const td = cell(tr, "操作", r.data.can_answer ? "" : "参与视频接听后可接听");
      if (r.data.can_answer) td.append(answerButton(w.id));
      body.append(tr);
    }
    status.textContent = r.data.waiting.length ? `排队 ${r.data.waiting.length} 人，在岗 ${r.data.answering} 人。` : "目前没有排队的来电。";
    const mine = document.getElementById("mine");
    mine.replaceChildren();
    for (const id of r.data.mine) {
      const a = document.createElement("a");
      a.href = `/video/calls/${id}/console`; a.textContent = "回到我正在进行的通话";
      mine.append(a);
    }
  }

  async function callbacks() {
    const r = await api("GET", "/video/v1/callbacks");
    const list = document.getElementById("callbacks");
    list.replaceChildren();
    for (const c of (r.data.callbacks || [])) {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = `${new Date(c.created_at * 1000).toLocaleString("zh-CN")} · ${c.phone_masked} · ${c.topic || "（未填写）"} `;
      const take = document.createElement("button");
      take.type = "button"; take.textContent = "回电";
      take.setAttribute("aria-label", `回电 ${c.phone_masked}`);
      // Taking a callback shows the whole number to me only, and records that I took it.
      take.addEventListener("click", async () => {
        take.disabled = true;
        const t = await api("POST", `/video/v1/callbacks/${c.id}/take`);
        text.textContent = t.ok ? `请拨打 ${t.data.phone}（${c.topic || "未填写咨询内容"}）` : (t.data.detail || "无法处理");
        take.remove();
      });
      li.append(text, take);
      list.append(li);
    }
    if (!list.children.length) { const li = document.createElement("li"); li.textContent = "没有待回电的请求。"; list.append(li); }
  }

  const duty = document.getElementById("duty");
  if (duty) duty.addEventListener("click", async () => {
    const on = duty.dataset.on === "1";
    duty.disabled = true;
    const r = await api("POST", "/video/v1/duty", { on });
    duty.disabled = false;
    if (!r.ok) { status.textContent = r.data.detail || "操作失败，请重试"; return; }
    // In place, not by reloading: a reload racing a click on 接听 would drop the answer.
    duty.dataset.on = on ? "0" : "1";
    for (const el of [duty, document.getElementById("duty-state")]) {
      el.textContent = on ? el.dataset.whenOn : el.dataset.whenOff;
    }
    refresh();
  });

  refresh(); callbacks();
  setInterval(refresh, 2000);
})();
