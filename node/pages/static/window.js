// Window (收件) pages: scans uploaded with progress (drag and drop, several at once), each tied to
// a material; 容缺 / 告知承诺 marks; the application body; the 收件凭证 opened right after.
"use strict";
(function () {
  const T = window.Tongban;
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  let nextId = 1;

  function sizeText(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  // A field's error from the API goes once the clerk has dealt with it (a file, a new mark).
  function clearFieldError(li) {
    if (!li) return;
    li.querySelectorAll(".field-error[data-generated]").forEach((n) => n.remove());
    li.removeAttribute("aria-invalid");
  }

  // -- drag and drop onto any [data-dropzone]: the files go to the zone's file input ---------
  function wireDropzone(zone, take) {
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files.length) take(Array.from(e.dataTransfer.files));
    });
  }

  // -- the application form: one upload list per part, each file tied to one material -------
  class Part {
    constructor(box) {
      this.box = box;
      this.files = [];
      this.list = box.querySelector("[data-uploads]");
      this.materials = Array.from(box.querySelectorAll("li.material"));
      const batch = box.querySelector("[data-batch]");
      batch.addEventListener("change", () => { this.add(Array.from(batch.files), null); batch.value = ""; });
      wireDropzone(batch.closest("[data-dropzone]"), (files) => this.add(files, null));
      for (const li of this.materials) {
        const input = li.querySelector("[data-material-input]");
        const code = li.dataset.code;
        input.addEventListener("change", () => { this.add(Array.from(input.files), code); input.value = ""; });
        wireDropzone(li.querySelector("[data-dropzone]"), (files) => this.add(files, code));
        li.querySelectorAll('input[type="radio"]').forEach((r) => r.addEventListener("change", () => {
          clearFieldError(li);
          this.refresh();
        }));
      }
      this.refresh();
    }
    material(code) { return this.materials.find((li) => li.dataset.code === code); }
    status(li) {
      const checked = li.querySelector('input[type="radio"]:checked');
      return checked ? checked.value : "provided";
    }
    holder(code) { return this.files.find((f) => f.material === code); }
    // A file dropped on one material goes there (the first of several; the rest are matched).
    guess(name, taken) {
      const upper = name.toUpperCase();
      const byName = this.materials.find((li) => upper.startsWith(li.dataset.code.toUpperCase()) && !taken.has(li.dataset.code));
      if (byName) return byName.dataset.code;
      const free = this.materials.find((li) => !taken.has(li.dataset.code) && this.status(li) === "provided");
      return free ? free.dataset.code : "";
    }
    add(files, target) {
      const taken = new Set(this.files.filter((f) => f.material).map((f) => f.material));
      files.forEach((file, index) => {
        let code = index === 0 && target ? target : this.guess(file.name, taken);
        if (code) taken.add(code);
        const entry = { id: nextId++, file, material: "", progress: 0, state: "uploading", sha256: null, error: "" };
        this.files.push(entry);
        this.row(entry);
        this.assign(entry, code);
        this.send(entry);
      });
    }
    assign(entry, code) {
      if (code) {
        const previous = this.holder(code);
        if (previous && previous !== entry) { previous.material = ""; this.sync(previous); }
        const li = this.material(code);
        const provided = li && li.querySelector('input[value="provided"]');
        if (provided && this.status(li) !== "provided") provided.checked = true;
      }
      entry.material = code;
      if (code && entry.state === "done") clearFieldError(this.material(code));
      this.sync(entry);
      this.refresh();
    }
    row(entry) {
      const li = document.createElement("li");
      li.className = "upload";
      li.dataset.upload = entry.id;
      const selectId = `upload-${entry.id}-material`;
      const name = document.createElement("span");
      name.className = "upload-name";
      name.textContent = `${entry.file.name}（${sizeText(entry.file.size)}）`;
      const progress = document.createElement("progress");
      progress.max = 1; progress.value = 0;
      progress.setAttribute("aria-label", `${entry.file.name} 上传进度`);
      const state = document.createElement("span");
      state.className = "upload-state";
      state.textContent = "上传中…";
      const label = document.createElement("label");
      label.htmlFor = selectId;
      label.className = "sr-only";
      label.textContent = `${entry.file.name} 对应材料`;
      const select = document.createElement("select");
      select.id = selectId;
      select.dataset.skip = "";
      select.append(new Option("（不使用此文件）", ""));
      for (const m of this.materials) select.append(new Option(`${m.dataset.code} ${m.dataset.name}`, m.dataset.code));
      select.addEventListener("change", () => this.assign(entry, select.value));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = "移除";
      remove.setAttribute("aria-label", `移除 ${entry.file.name}`);
      remove.addEventListener("click", () => {
        this.files = this.files.filter((f) => f !== entry);
        li.remove();
        this.refresh();
      });
      li.append(name, progress, state, label, select, remove);
      this.list.append(li);
      entry.el = { li, progress, state, select };
    }
    sync(entry) { if (entry.el) entry.el.select.value = entry.material; }
    async send(entry) {
      const li = entry.material ? this.material(entry.material) : null;
      const accept = (li && li.dataset.accept ? li.dataset.accept : "application/pdf,image/jpeg,image/png").split(",");
      const max = li ? Number(li.dataset.max) : 20 * 1024 * 1024;
      let problem = "";
      if (entry.file.type && !accept.includes(entry.file.type)) problem = "只接受 PDF、JPG、PNG 文件";
      else if (entry.file.size > max) problem = `文件不能超过 ${Math.max(1, Math.floor(max / 1048576))} MB`;
      if (problem) { this.done(entry, false, problem); return; }
      const result = await T.upload(entry.file, "/api/v1/uploads", (p) => {
        entry.progress = p;
        entry.el.progress.value = p;
        this.refresh();
      });
      if (result.ok) { entry.sha256 = result.data.sha256; this.done(entry, true, ""); }
      else this.done(entry, false, (result.data && result.data.detail) || "上传失败");
    }
    done(entry, ok, problem) {
      entry.state = ok ? "done" : "failed";
      entry.error = problem;
      entry.el.progress.value = ok ? 1 : 0;
      entry.el.state.textContent = ok ? "已上传" : `上传失败：${problem}`;
      entry.el.li.classList.toggle("failed", !ok);
      if (ok && entry.material) clearFieldError(this.material(entry.material));
      this.refresh();
    }
    refresh() {
      for (const li of this.materials) {
        const f = this.holder(li.dataset.code);
        const status = this.status(li);
        const zone = li.querySelector("[data-dropzone]");
        const state = li.querySelector("[data-state]");
        zone.hidden = status !== "provided";
        li.dataset.status = status;
        if (status === "deferred") state.textContent = "容缺：申请人签署承诺书后限期补齐";
        else if (status === "pledged") state.textContent = "告知承诺：以承诺书代替";
        else if (!f) state.textContent = "未上传";
        else if (f.state === "uploading") state.textContent = `上传中 ${Math.round(f.progress * 100)}%：${f.file.name}`;
        else if (f.state === "failed") state.textContent = `上传失败：${f.file.name}（${f.error}）`;
        else state.textContent = `已上传：${f.file.name}（${sizeText(f.file.size)}）`;
        li.classList.toggle("has-file", Boolean(f && f.state === "done"));
      }
    }
    // Files already on the node (视频收件: a video call's snapshots), listed as uploaded.
    preset(files) {
      const taken = new Set(this.files.filter((f) => f.material).map((f) => f.material));
      for (const f of files) {
        const entry = { id: nextId++, file: { name: f.name, size: f.size }, material: "", progress: 1, state: "uploading", sha256: f.sha256, error: "" };
        this.files.push(entry);
        this.row(entry);
        const code = this.guess(f.name, taken);
        if (code) taken.add(code);
        this.assign(entry, code);
        this.done(entry, true, "");
      }
    }
    pending() { return this.files.some((f) => f.state === "uploading"); }
    body() {
      const out = [];
      for (const li of this.materials) {
        const status = this.status(li);
        if (status === "none") continue;
        const f = this.holder(li.dataset.code);
        out.push({ code: li.dataset.code, status, blob: status === "provided" && f && f.sha256 ? f.sha256 : null });
      }
      return out;
    }
  }

  function openReceipt(action, code) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    form.hidden = true;
    for (const [name, value] of [["code", code], ["csrf", csrf()]]) {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = value;
      form.append(input);
    }
    document.body.append(form);
    form.submit();
  }

  function formError(form, message) {
    const box = form.querySelector(".form-error");
    box.hidden = false;
    box.textContent = message;
    box.focus();
  }

  function wireApply(form) {
    const parts = Array.from(form.querySelectorAll("fieldset[data-part]")).map((box) => new Part(box));
    const preset = document.getElementById("call-files");
    if (preset && parts.length) parts[0].preset(JSON.parse(preset.textContent));
    const bundle = form.dataset.bundle !== undefined;
    form.tongbanBody = (body) => {
      if (parts.some((p) => p.pending())) { formError(form, "文件仍在上传，请等上传完成后再提交"); return null; }
      if (bundle) {
        body.parts = parts.map((p, i) => {
          const own = body["p" + i] || {};
          delete body["p" + i];
          return { item_code: own.item_code, form: own.form || {}, materials: p.body() };
        });
      } else {
        body.form = body.form || {};
        body.materials = parts[0].body();
      }
      if (body.delivery && body.delivery.method !== "mail") delete body.delivery.address;
      return body;
    };
    form.addEventListener("tongban:done", (e) => {
      const data = e.detail || {};
      const id = data.case ? data.case.id : data.bundle.id;
      const target = bundle ? `${form.dataset.receipt}${id}/receipt` : `${form.dataset.receipt}${id}`;
      openReceipt(target, data.query_code || "");
    });
    // Applicant type and ID type decide how the ID number is checked as people type.
    const idType = form.querySelector('[name="applicant.id_type"]');
    const idNumber = form.querySelector('[name="applicant.id_number"]');
    const checkFor = { resident_id: "id_number", unified_social_credit_code: "uscc" };
    const setCheck = () => {
      const kind = checkFor[idType.value];
      if (kind) idNumber.dataset.validate = kind; else delete idNumber.dataset.validate;
      const field = idNumber.closest(".field");
      const note = field.querySelector(".field-error[data-live]");
      if (note) note.remove();
      idNumber.removeAttribute("aria-invalid");
      if (kind && idNumber.value) T.liveCheck(idNumber);
    };
    idType.addEventListener("change", setCheck);
    form.querySelectorAll('[name="applicant.kind"]').forEach((r) => r.addEventListener("change", () => {
      idType.value = r.value === "org" ? "unified_social_credit_code" : "resident_id";
      setCheck();
    }));
    form.querySelectorAll("[data-delivery]").forEach((r) => r.addEventListener("change", () => {
      const mail = form.querySelector("[data-delivery]:checked").value === "mail";
      form.querySelector(".mail-address").hidden = !mail;
    }));
  }

  // -- supplement / 容缺 catch-up: one file per requested material ---------------------------
  function wireSlots(form) {
    const slots = Array.from(form.querySelectorAll("li.material")).map((li) => ({ li, sha256: null, busy: false }));
    for (const slot of slots) {
      const input = slot.li.querySelector("[data-slot-input]");
      const state = slot.li.querySelector("[data-state]");
      const take = async (files) => {
        const file = files[0];
        if (!file) return;
        slot.busy = true; slot.sha256 = null;
        state.textContent = `上传中 0%：${file.name}`;
        const result = await T.upload(file, "/api/v1/uploads", (p) => {
          state.textContent = `上传中 ${Math.round(p * 100)}%：${file.name}`;
        });
        slot.busy = false;
        if (result.ok) { slot.sha256 = result.data.sha256; clearFieldError(slot.li); state.textContent = `已上传：${file.name}（${sizeText(file.size)}）`; }
        else state.textContent = `上传失败：${(result.data && result.data.detail) || "请重试"}`;
        slot.li.classList.toggle("has-file", Boolean(slot.sha256));
      };
      input.addEventListener("change", () => { take(Array.from(input.files)); input.value = ""; });
      wireDropzone(slot.li.querySelector("[data-dropzone]"), take);
    }
    const catchUp = form.dataset.uploadAction === "catch_up";
    form.tongbanBody = (body) => {
      if (slots.some((s) => s.busy)) { formError(form, "文件仍在上传，请等上传完成后再提交"); return null; }
      const chosen = catchUp ? slots.filter((s) => s.sha256) : slots;
      body.materials = chosen.map((s) => {
        const entry = { name: s.li.dataset.name, blob: s.sha256 };
        if (s.li.dataset.code) entry.code = s.li.dataset.code;
        return entry;
      });
      return body;
    };
  }

  document.querySelectorAll("form[data-rating]").forEach((form) => {
    form.tongbanBody = (body) => {
      body.level = body.level ? Number(body.level) : null;
      return body;
    };
  });
  document.querySelectorAll("form[data-window-apply]").forEach(wireApply);
  document.querySelectorAll("form[data-upload-action]").forEach(wireSlots);
  document.querySelectorAll("[data-dispatch]").forEach((r) => r.addEventListener("change", () => {
    const mail = document.querySelector("[data-dispatch]:checked").value === "mail";
    document.querySelectorAll(".mail-only").forEach((n) => { n.hidden = !mail; });
  }));
  // 显示完整号码: the answer of the recorded reveal fills the masked ID number and phone.
  const reveal = document.getElementById("reveal");
  if (reveal) {
    reveal.addEventListener("tongban:done", (e) => {
      const full = (e.detail && e.detail.revealed) || {};
      document.querySelectorAll("[data-revealed]").forEach((n) => {
        if (full[n.dataset.revealed]) n.textContent = full[n.dataset.revealed];
      });
      reveal.hidden = true;
    });
  }
})();
