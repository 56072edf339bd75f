// Saved styles on the generation form: list the project's styles, apply one to the prompt fields
// (A1111's merge: "{prompt}" in the style is replaced by the prompt, otherwise the style is added
// after it with ", "), save the current prompts as a style, delete one. The job gets the merged
// prompts, so an image records the prompt it was made with whatever happens to the style later.

import { csrfToken, format, pageStrings } from "./live.js";

const $ = (id) => document.getElementById(id);
const root = $("im-styles");
const strings = pageStrings("styles-strings");

const ui = {
  select: $("im-style"),
  apply: $("im-style-apply"),
  save: $("im-style-save"),
  del: $("im-style-delete"),
  newRow: $("im-style-new"),
  name: $("im-style-name"),
  create: $("im-style-create"),
  cancel: $("im-style-cancel"),
  error: $("im-style-error"),
  prompt: $("im-prompt"),
  negative: $("im-negative_prompt"),
};

let styles = [];

/** A1111's merge_prompts. */
export function mergePrompt(stylePrompt, prompt) {
  if (stylePrompt.includes("{prompt}")) return stylePrompt.replaceAll("{prompt}", prompt);
  return [prompt.trim(), stylePrompt.trim()].filter(Boolean).join(", ");
}

function showError(message) {
  ui.error.textContent = message ?? "";
  ui.error.hidden = !message;
}

function selected() {
  return styles.find((s) => String(s.id) === ui.select.value) ?? null;
}

function render(keep = ui.select.value) {
  ui.select.replaceChildren(ui.select.options[0]);
  for (const s of styles) {
    const opt = document.createElement("option");
    opt.value = String(s.id);
    opt.textContent = s.name;
    opt.title = [s.prompt, s.negative_prompt].filter(Boolean).join("\n");
    ui.select.append(opt);
  }
  ui.select.value = styles.some((s) => String(s.id) === keep) ? keep : "";
  sync();
}

function sync() {
  const style = selected();
  ui.apply.disabled = !style;
  if (ui.del) ui.del.disabled = !style;
}

async function request(url, body) {
  const res = await fetch(url, {
    method: body ? "POST" : "GET",
    body,
    headers: { Accept: "application/json", ...(body ? { "X-CSRFToken": csrfToken(document) } : {}) },
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  return { ok: res.ok, status: res.status, data };
}

async function load() {
  try {
    const { ok, data } = await request(root.dataset.stylesUrl);
    if (!ok) throw new Error();
    styles = data.styles ?? [];
    render();
  } catch {
    showError(strings.loadFailed ?? "");
  }
}

function apply() {
  const style = selected();
  if (!style) return;
  if (style.prompt) ui.prompt.value = mergePrompt(style.prompt, ui.prompt.value);
  if (style.negative_prompt && ui.negative) ui.negative.value = mergePrompt(style.negative_prompt, ui.negative.value);
  ui.prompt.dispatchEvent(new Event("input", { bubbles: true }));
}

async function create() {
  const body = new FormData();
  body.append("name", ui.name.value);
  body.append("prompt", ui.prompt.value);
  body.append("negative_prompt", ui.negative?.value ?? "");
  const { ok, status, data } = await request(root.dataset.stylesUrl, body);
  if (!ok) {
    const fields = Object.values(data?.error?.fields ?? {}).join(" ");
    showError(`${strings.failed ?? ""} ${data?.error?.message || fields || status}`.trim());
    return;
  }
  showError("");
  styles = [...styles, data].sort((a, b) => a.name.localeCompare(b.name));
  ui.newRow.hidden = true;
  ui.name.value = "";
  render(String(data.id));
}

async function remove() {
  const style = selected();
  if (!style || !confirm(format(strings.confirmDelete ?? "{name}", { name: style.name }))) return;
  const { ok, status, data } = await request(`${root.dataset.stylesUrl}${style.id}/delete/`, new FormData());
  if (!ok) {
    showError(`${strings.failed ?? ""} ${data?.error?.message ?? status}`.trim());
    return;
  }
  styles = styles.filter((s) => s.id !== style.id);
  render("");
}

if (root && ui.select && ui.prompt) {
  ui.select.addEventListener("change", sync);
  ui.apply.addEventListener("click", apply);
  ui.save?.addEventListener("click", () => {
    ui.newRow.hidden = false;
    ui.name.focus();
  });
  ui.cancel?.addEventListener("click", () => (ui.newRow.hidden = true));
  ui.create?.addEventListener("click", create);
  ui.name?.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault(); // not the generation form's submit
      create();
    }
  });
  ui.del?.addEventListener("click", remove);
  load();
}
