// Fine-tune form (SFT, DPO, reward model, GRPO): a live memory estimate for the current settings.
// The server computes it from the base model's config and weights (finetunes:estimate), so the
// numbers match what the worker will load. We send the form's values as JSON, numbers as numbers,
// a moment after the user stops typing, and only the newest answer is shown.

import { csrfToken, format } from "./live.js";

const DEBOUNCE_MS = 350;

const form = document.getElementById("finetune-form");
const $ = (id) => document.getElementById(id);

function loadStrings() {
  try {
    return JSON.parse($("finetune-strings")?.textContent ?? "{}");
  } catch {
    return {};
  }
}

const strings = loadStrings();

// Django's CSRF cookie; the form's hidden token is the fallback when the cookie is HttpOnly.
/**
 * The form as the params JSON the server validates. Empty inputs are left out so the schema's
 * defaults apply; numeric inputs (data-type integer/number) and the *_id selects become numbers;
 * dataset_version_id is left out: the estimate does not depend on it.
 */
function formParams() {
  const params = {};
  for (const el of form.elements) {
    const name = el.name;
    if (!name || name === "csrfmiddlewaretoken" || name === "dataset_version_id" || el.disabled) continue;
    if (el.type === "hidden" && form.querySelector(`input[type=checkbox][name="${name}"]`)) continue;
    if (el.type === "checkbox") {
      params[name] = el.checked;
      continue;
    }
    const raw = el.value.trim();
    if (raw === "") continue;
    if (el.dataset.type === "integer" || el.dataset.type === "number" || name.endsWith("_id")) {
      const n = Number(raw);
      params[name] = Number.isFinite(n) ? n : raw; // Let the server name the bad value.
    } else {
      params[name] = el.value;
    }
  }
  return params;
}

const ui = {
  box: $("ft-estimate"),
  total: $("ft-estimate-total"),
  status: $("ft-estimate-status"),
  parts: $("ft-estimate-parts"),
};

// Tiny models estimate in MiB: "0.0 GiB" would read as "nothing". The server rounds to 0.001 GiB.
function gib(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  if (n < 1) {
    const mib = n * 1024;
    const text = mib >= 10 ? mib.toFixed(0) : mib >= 1 ? mib.toFixed(1) : "< 1";
    return strings.mib ? format(strings.mib, { n: text }) : `${text} MiB`;
  }
  const text = n >= 10 ? n.toFixed(1) : n.toFixed(2);
  return strings.gib ? format(strings.gib, { n: text }) : `${text} GiB`;
}

function show(kind, message, estimate) {
  ui.box.dataset.state = kind;
  ui.status.textContent = message ?? "";
  ui.parts.hidden = !estimate;
  if (!estimate) {
    ui.total.textContent = "—";
    return;
  }
  ui.total.textContent = gib(estimate.total_gib);
  for (const cell of ui.parts.querySelectorAll("[data-part]")) {
    const key = cell.dataset.part;
    const value = estimate[key];
    cell.textContent = key.endsWith("_gib") ? gib(value) : Number.isFinite(Number(value)) ? Number(value).toLocaleString() : "—";
  }
}

let timer = null;
let generation = 0;
let controller = null;

async function refresh() {
  const mine = ++generation;
  controller?.abort(); // A slower, older answer must not overwrite a newer one.
  controller = new AbortController();
  ui.box.classList.add("is-loading");
  if (ui.box.dataset.state !== "ok") ui.status.textContent = strings.loading ?? "";
  try {
    const res = await fetch(form.dataset.estimateUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(form ?? document), Accept: "application/json" },
      body: JSON.stringify(formParams()),
      credentials: "same-origin",
      signal: controller.signal,
    });
    let body = {};
    try {
      body = await res.json();
    } catch {
      body = {};
    }
    if (mine !== generation) return;
    if (body.estimate) show("ok", strings.ready, body.estimate);
    else if (body.pending) show("pending", body.pending);
    else show("error", body.error ?? strings.failed);
  } catch (err) {
    if (err.name === "AbortError") return;
    if (mine === generation) show("error", strings.failed);
  } finally {
    if (mine === generation) ui.box.classList.remove("is-loading");
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(refresh, DEBOUNCE_MS);
}

if (form && ui.box) {
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  refresh();
  // A double click on "Start" must not start two fine-tunes.
  const button = $("ft-submit");
  form.addEventListener("submit", () => {
    if (button) setTimeout(() => (button.disabled = true), 0);
  });
  // Back from the job page (back/forward cache): the form is usable again.
  window.addEventListener("pageshow", (ev) => {
    if (ev.persisted && button && $("ft-no-versions") === null) button.disabled = false;
  });
}

// DPO from an adapter, GRPO with a reward model: the adapter was trained on one base model, so
// choosing it chooses that base model too (the server refuses another one in any case).
for (const id of ["ft-parent_adapter_id", "ft-reward_adapter_id"]) {
  const select = $(id);
  const base = $("ft-base_model_id");
  if (!select || !base) continue;
  const follow = () => {
    const wanted = select.selectedOptions[0]?.dataset.baseModel;
    if (wanted && base.value !== wanted && base.querySelector(`option[value="${wanted}"]`)) {
      base.value = wanted;
      base.dispatchEvent(new Event("change", { bubbles: true }));
    }
  };
  select.addEventListener("change", follow);
  follow();
}
