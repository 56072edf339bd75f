// Dataset mapping page: shows the role selects of the chosen schema, fills in its default template,
// and keeps a live preview of rendered records (POST JSON to the form's data-preview-url).

import { csrfToken } from "./live.js";

const DEBOUNCE_MS = 300;

const form = document.getElementById("map-form");
const schemaSelect = form?.querySelector('select[name="schema"]');
const template = form?.querySelector('textarea[name="template"]');
const previewBox = document.getElementById("ds-preview");
const status = document.getElementById("ds-preview-status");
const defaults = JSON.parse(document.getElementById("ds-default-templates")?.textContent || "{}");

// The user's own template is never overwritten; an empty one or a schema's default is not "their own".
const isOwnTemplate = () => {
  const text = template?.value.trim() ?? "";
  return text !== "" && text !== (defaults[schemaSelect.value] ?? "").trim();
};
let templateEdited = Boolean(template && schemaSelect) && isOwnTemplate();
let timer = null;
let inFlight = null;

/** Only the chosen schema's role selects are visible and enabled, so hidden ones do not post. */
function showRoles() {
  for (const group of form.querySelectorAll("fieldset.ds-roles")) {
    const on = group.dataset.schema === schemaSelect.value;
    group.hidden = !on;
    group.disabled = !on;
  }
}

function currentColumns() {
  const group = form.querySelector(`fieldset.ds-roles[data-schema="${CSS.escape(schemaSelect.value)}"]`);
  const columns = {};
  for (const select of group?.querySelectorAll("select[data-role]") ?? []) {
    if (select.value) columns[select.dataset.role] = select.value;
  }
  return columns;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** A sample is {location, text, record} (or, tolerated, just the rendered text). */
function sampleView(sample, index) {
  const item = el("figure", "ds-sample-item");
  const isObject = sample !== null && typeof sample === "object";
  const text = isObject ? (sample.text ?? sample.rendered ?? "") : String(sample ?? "");
  const where = isObject ? sample.location : "";
  item.append(el("figcaption", "muted small", where || `${previewBox.dataset.sample} ${index + 1}`));
  item.append(el("pre", "ds-rendered", text));
  return item;
}

/** Problems in the first records (each a message string or a DatasetError dict with `message`). */
function problemsView(errors) {
  const list = el("ul", "form-error ds-preview-errors");
  for (const e of errors) list.append(el("li", null, typeof e === "string" ? e : (e.message ?? JSON.stringify(e))));
  return list;
}

function showError(message) {
  previewBox.replaceChildren(el("div", "form-error", message || previewBox.dataset.failed));
}

async function refreshPreview() {
  inFlight?.abort();
  inFlight = new AbortController();
  status.textContent = previewBox.dataset.loading;
  previewBox.classList.add("is-loading");
  const body = { schema: schemaSelect.value, columns: currentColumns(), template: template?.value ?? "" };
  try {
    const response = await fetch(form.dataset.previewUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(form ?? document) },
      body: JSON.stringify(body),
      signal: inFlight.signal,
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok || data.error) {
      showError(data.error);
    } else {
      const samples = data.samples ?? [];
      const errors = data.errors ?? [];
      const nodes = samples.map(sampleView);
      if (errors.length) nodes.unshift(problemsView(errors));
      if (!nodes.length) nodes.push(el("p", "muted small", previewBox.dataset.empty));
      previewBox.replaceChildren(...nodes);
    }
  } catch (err) {
    if (err.name === "AbortError") return;
    showError();
  }
  status.textContent = "";
  previewBox.classList.remove("is-loading");
}

function schedulePreview() {
  clearTimeout(timer);
  timer = setTimeout(refreshPreview, DEBOUNCE_MS);
}

if (form && schemaSelect && previewBox && form.dataset.previewUrl) {
  schemaSelect.addEventListener("change", () => {
    showRoles();
    if (template && !templateEdited) template.value = defaults[schemaSelect.value] ?? "";
  });
  template?.addEventListener("input", () => {
    templateEdited = isOwnTemplate();
  });
  form.addEventListener("change", schedulePreview);
  form.addEventListener("input", schedulePreview);
  showRoles();
  refreshPreview();
}

// After a refused import, bring the list of problems into view.
document.getElementById("import-errors")?.focus();
