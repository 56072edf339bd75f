// Gallery pages: "PNG info" (upload a PNG, read its generation parameters, hand them to the image
// form), confirmations for destructive forms, and board toggles without a page reload.
// Everything here enhances plain forms and links: without JavaScript the pages still work.

import { csrfToken, pageStrings } from "./live.js";

const $ = (id) => document.getElementById(id);
const strings = pageStrings("gallery-strings");

// ---------- confirmations: <form data-confirm="…"> ----------

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (ev) => {
    if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
  });
}

// ---------- PNG info ----------

/**
 * PNG info's fields (named after A1111's labels) -> the image form's query string (named after the
 * image.generate parameters). Nested values (extra) stay out; the model goes by name (?model=),
 * which the form matches against its list.
 */
function fieldsQuery(fields) {
  const f = { ...(fields ?? {}) };
  const q = new URLSearchParams();
  const put = (name, value) => {
    if (value === null || value === undefined || value === "" || typeof value === "object") return;
    q.set(name, String(value));
  };
  // A1111 >= 1.9 writes "Sampler: DPM++ 2M, Schedule type: Karras": the form knows "DPM++ 2M Karras".
  let sampler = f.sampler;
  if (sampler && f.schedule_type && !["Automatic", "Uniform"].includes(f.schedule_type)) {
    sampler = `${sampler} ${f.schedule_type}`;
  }
  for (const name of ["prompt", "negative_prompt", "steps", "cfg_scale", "seed", "width", "height", "model"]) put(name, f[name]);
  put("sampler", sampler);
  if (f.hires_upscale != null || f.hires_upscaler || f.hires_steps != null) {
    // In a txt2img infotext with hi-res fix, "Denoising strength" is the second pass's.
    put("hires", "true");
    put("hires_scale", f.hires_upscale);
    put("hires_upscaler", f.hires_upscaler ? String(f.hires_upscaler).toLowerCase() : undefined);
    put("hires_steps", f.hires_steps || undefined); // A1111 writes 0 for "as many as the first pass"
    put("hires_denoise", f.denoising_strength);
  } else {
    put("denoising_strength", f.denoising_strength);
  }
  return q.toString();
}

const png = {
  box: $("gl-pnginfo"),
  form: $("gl-png-form"),
  file: $("gl-png-file"),
  status: $("gl-png-status"),
  error: $("gl-png-error"),
  result: $("gl-png-result"),
  text: $("gl-png-text"),
  use: $("gl-png-use"),
};

function pngReset() {
  png.error.hidden = true;
  png.error.textContent = "";
  png.result.hidden = true;
  png.text.textContent = "";
  png.use.hidden = true;
  png.status.hidden = true;
}

function pngError(message) {
  png.status.hidden = true;
  png.error.textContent = message;
  png.error.hidden = false;
}

async function readPng() {
  pngReset();
  const file = png.file.files?.[0];
  if (!file) return;
  if (file.type && file.type !== "image/png" && !/\.png$/i.test(file.name)) {
    pngError(strings.notPng ?? "PNG?");
    return;
  }
  png.status.textContent = strings.reading ?? "…";
  png.status.hidden = false;
  const body = new FormData();
  body.append("file", file);
  let res;
  let data = null;
  try {
    res = await fetch(png.box.dataset.url, {
      method: "POST",
      body, // multipart: the browser sets the boundary
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken(png.form) },
      credentials: "same-origin",
    });
    try {
      data = await res.json();
    } catch {
      data = null;
    }
  } catch {
    pngError(strings.network ?? "");
    return;
  }
  if (png.file.files?.[0] !== file) return; // another file was chosen meanwhile
  png.status.hidden = true;
  if (!res.ok || !data || data.error) {
    const why = typeof data?.error === "string" ? data.error : (data?.error?.message ?? `HTTP ${res.status}`);
    pngError(`${strings.failed ?? ""} ${why}`.trim());
    return;
  }
  png.text.textContent = String(data.parameters ?? "");
  png.result.hidden = false;
  const base = png.box.dataset.imagesUrl;
  const query = fieldsQuery(data.fields);
  if (base && query) {
    png.use.href = `${base}?${query}`;
    png.use.hidden = false;
  }
}

if (png.box && png.file) {
  png.file.addEventListener("change", readPng);
  png.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    readPng();
  });
}

// ---------- board toggles on the detail page ----------

for (const form of document.querySelectorAll("form.gl-board-toggle")) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const res = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
        credentials: "same-origin",
      });
      const data = res.ok ? await res.json() : null;
      if (!data || typeof data.in_collection !== "boolean") throw new Error(String(res.status));
      button.setAttribute("aria-pressed", String(data.in_collection));
      button.title = data.in_collection ? (strings.inBoard ?? "") : (strings.notInBoard ?? "");
    } catch {
      window.alert(strings.toggleFailed ?? "Error");
    } finally {
      button.disabled = false;
    }
  });
}
