// 办件 page: result-document upload with progress, the supplement notice's item rows, and the
// few payloads that a plain form cannot express (app.js posts them through form.tongbanBody).
"use strict";
(function () {
  const T = window.Tongban;

  // -- uploads: a file input with data-upload="<hidden input id>" uploads at once -------------
  function uploadField(input) {
    const field = input.closest(".field");
    const bar = field.querySelector("progress");
    const status = field.querySelector(".upload-status");
    const hidden = document.getElementById(input.dataset.upload);
    const form = input.form;
    input.addEventListener("change", async () => {
      hidden.value = "";
      const file = input.files && input.files[0];
      if (!file) return;
      form.dataset.uploading = "1";
      bar.hidden = false;
      bar.value = 0;
      status.textContent = `正在上传「${file.name}」…`;
      status.removeAttribute("role");
      const answer = await T.upload(file, "/api/v1/uploads", (p) => { bar.value = p; });
      delete form.dataset.uploading;
      bar.hidden = true;
      if (!answer.ok) {
        status.setAttribute("role", "alert");
        status.textContent = `上传失败：${(answer.data && answer.data.detail) || "请重试"}`;
        input.setAttribute("aria-invalid", "true");
        return;
      }
      input.removeAttribute("aria-invalid");
      hidden.value = answer.data.sha256;
      status.textContent = `已上传「${answer.data.name || file.name}」`;
      const nameInput = input.dataset.nameInto && document.getElementById(input.dataset.nameInto);
      if (nameInput && !nameInput.value) nameInput.value = file.name.replace(/\.[^.]+$/, "");
    });
  }
  document.querySelectorAll("input[type=file][data-upload]").forEach(uploadField);

  function stillUploading(form) {
    if (!form.dataset.uploading) return false;
    T.showErrors(form, { detail: "文件仍在上传，请稍候再提交" });
    return true;
  }

  // -- the supplement notice: one row per item -----------------------------------------------
  function renumber(box) {
    box.querySelectorAll(".supp-item").forEach((row, i) => {
      row.querySelector(".n").textContent = String(i + 1);
      for (const [cls, key, prefix] of [
        ["supp-code", null, "supp-code-"],
        ["supp-name", "name", "supp-name-"],
        ["supp-req", "requirement", "supp-req-"],
      ]) {
        const el = row.querySelector("." + cls);
        el.id = prefix + i;
        const label = row.querySelector(`label[for^="${prefix}"]`);
        if (label) label.htmlFor = prefix + i;
        if (key) el.dataset.field = `items[${i}].${key}`;
      }
      row.querySelector(".supp-remove").hidden = box.querySelectorAll(".supp-item").length < 2;
    });
  }
  document.querySelectorAll("form[data-body=supplement-request]").forEach((form) => {
    const box = form.querySelector(".supp-items");
    const blank = box.querySelector(".supp-item").cloneNode(true);
    form.querySelector(".supp-add").addEventListener("click", () => {
      const row = blank.cloneNode(true);
      row.querySelectorAll("input, textarea").forEach((el) => { el.value = ""; });
      box.appendChild(row);
      renumber(box);
      row.querySelector("select").focus();
    });
    box.addEventListener("click", (e) => {
      if (!e.target.classList.contains("supp-remove")) return;
      e.target.closest(".supp-item").remove();
      renumber(box);
      form.querySelector(".supp-add").focus();
    });
    box.addEventListener("change", (e) => {
      if (!e.target.classList.contains("supp-code")) return;
      const option = e.target.selectedOptions[0];
      const name = e.target.closest(".supp-item").querySelector(".supp-name");
      if (option && option.dataset.name && !name.value) name.value = option.dataset.name;
    });
    form.tongbanBody = (body) => {
      body.items = [...box.querySelectorAll(".supp-item")].map((row) => {
        const item = {
          name: row.querySelector(".supp-name").value.trim(),
          requirement: row.querySelector(".supp-req").value.trim(),
        };
        const code = row.querySelector(".supp-code").value;
        if (code) item.material_code = code;
        return item;
      });
      return body;
    };
  });

  // -- payloads ------------------------------------------------------------------------------
  const bodies = {
    decide(form, body) {
      if (stillUploading(form)) return null;
      const blob = form.querySelector("[data-blob]").value;
      const name = form.querySelector("[data-doc-name]").value.trim();
      body.documents = blob ? [{ blob, name: name || "结果文书" }] : [];
      return body;
    },
    // datetime-local has no offset: the page speaks Beijing time.
    schedule(form, body) {
      if (body.scheduled_at && body.scheduled_at.length === 16) body.scheduled_at += ":00+08:00";
      return body;
    },
    rectify(form, body) {
      if (body.follow_up && !body.follow_up.result) delete body.follow_up;
      return body;
    },
    progress(form, body) {
      if (body.kind !== "pause") delete body.procedure;
      if (body.kind !== "extension") delete body.extension_days;
      return body;
    },
    dispatch(form, body) {
      if (body.method !== "mail") { delete body.courier; delete body.tracking_no; }
      return body;
    },
  };
  document.querySelectorAll("form[data-body]").forEach((form) => {
    const make = bodies[form.dataset.body];
    if (make) form.tongbanBody = (body) => make(form, body);
  });
  // PDF previews: the viewer is made when its <details> opens, not with the page.
  document.querySelectorAll("details[data-pdf]").forEach((box) => {
    box.addEventListener("toggle", () => {
      if (!box.open || box.querySelector("object")) return;
      const viewer = document.createElement("object");
      viewer.type = "application/pdf";
      viewer.data = box.dataset.pdf;
      viewer.setAttribute("aria-label", box.dataset.label || "PDF 预览");
      box.appendChild(viewer);
    });
  });
})();
