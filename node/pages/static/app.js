// Tongban pages: the little JavaScript that helps. Forms marked data-api post JSON to the node's
// API (the session cookie authenticates, the CSRF token rides in a header), field errors are
// shown next to their fields, and files upload with a progress bar.
"use strict";
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function api(method, url, body) {
    const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      return { ok: false, status: 0, data: { error: "network", detail: "网络连接失败，请检查网络后重试" } };
    }
    let data = {};
    try { data = await response.json(); } catch (err) { data = {}; }
    return { ok: response.ok, status: response.status, data };
  }

  // Upload one file with progress; resolves to the API's answer ({sha256, size, media_type...}).
  function upload(file, url, onProgress) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.withCredentials = true;
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch (err) { data = {}; }
        resolve({ ok: xhr.status >= 200 && xhr.status < 300, status: xhr.status, data });
      };
      xhr.onerror = () => resolve({ ok: false, status: 0, data: { error: "network", detail: "网络连接失败" } });
      xhr.send(file);
    });
  }

  function setPath(target, path, value) {
    const parts = path.split(".");
    let here = target;
    for (let i = 0; i < parts.length - 1; i++) {
      here[parts[i]] = here[parts[i]] || {};
      here = here[parts[i]];
    }
    const last = parts[parts.length - 1];
    if (last.endsWith("[]")) {
      const key = last.slice(0, -2);
      here[key] = here[key] || [];
      if (value !== undefined) here[key].push(value);
    } else {
      here[last] = value;
    }
  }

  // The JSON body of a form: name="a.b" nests, name="x[]" collects, data-type converts.
  function formBody(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.dataset.skip !== undefined || el.name === "csrf") continue;
      const type = el.dataset.type || "";
      let value;
      if (el.type === "checkbox") {
        if (type === "bool") value = el.checked;
        else if (!el.checked) { if (el.name.endsWith("[]")) setPath(body, el.name, undefined); continue; }
        else value = el.value;
      } else if (el.type === "radio") {
        if (!el.checked) continue;
        value = el.value;
      } else if (el.type === "file") {
        continue;
      } else {
        value = el.value;
        if (value === "" && el.dataset.optional !== undefined) continue;
        if (type === "int") value = value === "" ? null : Number(value);
        // <input type="datetime-local"> has no zone: the hall's clock is China time.
        if (type === "china_time" && value.length === 16) value += ":00+08:00";
        if (type === "json") { try { value = value ? JSON.parse(value) : null; } catch (err) { value = value; } }
        if (type === "lines") value = value.split("\n").map((s) => s.trim()).filter(Boolean);
      }
      setPath(body, el.name, value);
    }
    return body;
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error[data-generated]").forEach((n) => n.remove());
    form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
    const box = form.querySelector(".form-error");
    if (box) { box.hidden = true; box.textContent = ""; }
  }

  function showErrors(form, data) {
    const box = form.querySelector(".form-error");
    const unplaced = [];
    for (const f of data.fields || []) {
      const el = form.querySelector(`[name="${CSS.escape(f.field)}"], [data-field="${CSS.escape(f.field)}"]`);
      if (el) {
        el.setAttribute("aria-invalid", "true");
        // One message under a field: the node's answer replaces the check made while typing.
        const holder = el.closest(".field") || el.parentElement;
        holder.querySelectorAll(".field-error").forEach((n) => n.remove());
        const note = document.createElement("div");
        note.className = "field-error";
        note.dataset.generated = "";
        note.setAttribute("role", "alert");
        note.textContent = f.message;
        (el.closest(".field") || el.parentElement).appendChild(note);
      } else {
        unplaced.push(f.message);
      }
    }
    if (box) {
      box.hidden = false;
      box.textContent = [data.detail || "提交失败", ...unplaced].join("；");
      box.focus && box.focus();
    } else {
      alert([data.detail || "提交失败", ...unplaced].join("\n"));
    }
  }

  function fill(template, data) {
    return template.replace(/\{([a-z_]+)\}/g, (_, key) => encodeURIComponent(data[key] ?? ""));
  }

  async function submitApiForm(form, event) {
    event.preventDefault();
    clearErrors(form);
    const [method, url] = form.dataset.api.split(" ");
    let body = formBody(form);
    if (typeof form.tongbanBody === "function") body = form.tongbanBody(body);
    if (body === null) return;
    const buttons = form.querySelectorAll("button[type=submit]");
    buttons.forEach((b) => (b.disabled = true));
    if (form.dataset.confirm) {
      // Ask "are you sure" only about something the node would take: the same action is
      // checked first without being carried out (?dry_run=1), so a refusal comes before it.
      const check = await api(method, url + (url.includes("?") ? "&" : "?") + "dry_run=1", body);
      if (!check.ok) { buttons.forEach((b) => (b.disabled = false)); showErrors(form, check.data); return; }
      if (!window.confirm(form.dataset.confirm)) { buttons.forEach((b) => (b.disabled = false)); return; }
    }
    const result = await api(method, url, body);
    buttons.forEach((b) => (b.disabled = false));
    if (!result.ok) { showErrors(form, result.data); return; }
    form.dispatchEvent(new CustomEvent("tongban:done", { detail: result.data }));
    if (form.dataset.next) window.location.assign(fill(form.dataset.next, result.data));
    else if (form.dataset.stay === undefined) window.location.reload();
  }

  // Resident ID checksum (GB 11643) and mobile numbers, checked as people type.
  function idProblem(value) {
    const v = value.trim().toUpperCase();
    if (!v) return "";
    if (!/^\d{17}[\dX]$/.test(v)) return "身份证号码应为18位";
    const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const codes = "10X98765432";
    let sum = 0;
    for (let i = 0; i < 17; i++) sum += Number(v[i]) * w[i];
    return codes[sum % 11] === v[17] ? "" : "身份证号码校验位不正确，请核对";
  }
  function phoneProblem(value) {
    const v = value.trim();
    if (!v) return "";
    return /^1[3-9]\d{9}$/.test(v) || /^0\d{2,3}-?\d{7,8}$/.test(v) ? "" : "请填写正确的手机或固定电话号码";
  }
  // Unified social credit code (GB 32100): 18 characters, check character mod 31.
  function creditProblem(value) {
    const v = value.trim().toUpperCase();
    if (!v) return "";
    const chars = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    if (!/^[0-9A-HJ-NP-RTUW-Y]{2}\d{6}[0-9A-HJ-NP-RTUW-Y]{10}$/.test(v)) return "统一社会信用代码应为18位数字或大写字母";
    let sum = 0;
    for (let i = 0; i < 17; i++) sum += chars.indexOf(v[i]) * (Math.pow(3, i) % 31);
    return chars[(31 - (sum % 31)) % 31] === v[17] ? "" : "统一社会信用代码校验位不正确，请核对";
  }
  const checks = { id_number: idProblem, phone: phoneProblem, uscc: creditProblem };

  function liveCheck(el) {
    const check = checks[el.dataset.validate];
    if (!check) return;
    const problem = check(el.value);
    const field = el.closest(".field") || el.parentElement;
    // Typing again answers the node's earlier message: only the live check speaks now.
    field.querySelectorAll(".field-error[data-generated]").forEach((n) => n.remove());
    let note = field.querySelector(".field-error[data-live]");
    if (problem) {
      el.setAttribute("aria-invalid", "true");
      if (!note) {
        note = document.createElement("div");
        note.className = "field-error";
        note.dataset.live = "";
        note.setAttribute("aria-live", "polite");
        field.appendChild(note);
      }
      note.textContent = problem;
    } else {
      el.removeAttribute("aria-invalid");
      if (note) note.remove();
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.api) submitApiForm(form, event);
  });
  document.addEventListener("input", (event) => {
    const el = event.target;
    if (el.dataset && el.dataset.validate) liveCheck(el);
  });
  document.addEventListener("change", (event) => {
    const el = event.target;
    if (el.dataset && el.dataset.validate) liveCheck(el);
  });

  // Print buttons (the 收件凭证, the 一次告知 sheet, the inspection invitation).
  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element && event.target.closest("[data-print]");
    if (button) window.print();
  });

  // Wide tables scroll sideways inside .table-wrap; each carries a 左右滑动 hint that shows on a
  // phone (CSS). Where the table fits after all, the hint goes.
  function markWideTables() {
    for (const wrap of document.querySelectorAll(".table-wrap")) {
      const fits = wrap.scrollWidth <= wrap.clientWidth + 1;
      wrap.classList.toggle("fits", fits);
    }
  }
  document.addEventListener("DOMContentLoaded", markWideTables);
  window.addEventListener("resize", markWideTables);

  window.Tongban = { api, upload, formBody, showErrors, clearErrors, idProblem, phoneProblem, creditProblem, liveCheck };
})();
