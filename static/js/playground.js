// Text playground: submits a "textgen" job through the JSON API, then follows the job's websocket
// and streams each run's text into its own column. The job (not this page) is the source of truth:
// reloading the job page replays the same events, and the outputs are saved server-side.
//
// A run answers the whole conversation so far (the kind's `messages`); the conversation, and the
// user's own system prompt presets, live in this browser's localStorage: they are drafts of one
// person at one desk, and the answers themselves are saved as outputs anyway. The conversation
// exports as one line of OpenAI chat JSONL ({"messages": [...]}), which the dataset import reads.

import {
  TERMINAL_STATES,
  bindIndicator,
  connectLive,
  csrfToken,
  followJob,
  formErrors,
  format,
  loadStrings,
  setProgress,
} from "./live.js";

const $ = (id) => document.getElementById(id);
const form = $("pg-form");
const strings = loadStrings();
function readJson(id, fallback) {
  try {
    return JSON.parse($(id)?.textContent ?? "") ?? fallback;
  } catch {
    return fallback;
  }
}
const pgStrings = readJson("playground-strings", {});
const builtinPresets = readJson("playground-presets", []);

const ui = {
  base: $("pg-base_model_id"),
  slots: [$("pg-adapter-1"), $("pg-adapter-2")].filter(Boolean),
  noAdapters: $("pg-no-adapters"),
  runBase: $("pg-run-base"),
  prompt: $("pg-prompt"),
  system: $("pg-system"),
  chat: $("pg-use_chat_template"),
  run: $("pg-run"),
  stop: $("pg-stop"),
  error: $("pg-error"),
  jobLink: $("pg-job-link"),
  state: $("pg-state"),
  live: $("pg-live"),
  progress: $("pg-progress"),
  jobError: $("pg-job-error"),
  jobErrorText: $("pg-job-error-text"),
  placeholder: $("pg-placeholder"),
  columns: $("pg-columns"),
  log: $("pg-log"),
  columnTemplate: $("pg-column-template"),
  formats: $("pg-formats"),
  formatWarning: $("pg-format-warning"),
  newChat: $("pg-new-chat"),
  chatBox: $("pg-chat-box"),
  turns: $("pg-turns"),
  turnTemplate: $("pg-turn-template"),
  chatCount: $("pg-chat-count"),
  copy: $("pg-copy"),
  exportFile: $("pg-export"),
  copied: $("pg-copied"),
  preset: $("pg-preset"),
  presetsBuiltin: $("pg-presets-builtin"),
  presetsSaved: $("pg-presets-saved"),
  presetSave: $("pg-preset-save"),
  presetDelete: $("pg-preset-delete"),
};

// ---------- this browser's storage (private windows and full disks refuse it: then nothing is kept) ----------

const stored = {
  get(key, fallback) {
    try {
      return JSON.parse(localStorage.getItem(key) ?? "null") ?? fallback;
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* not kept: the page still works for this visit */
    }
  },
};
const chatKey = `atelier.playground.chat.${form?.dataset.projectId}`;
const presetsKey = `atelier.playground.presets.${form?.dataset.userId}`;

// ---------- helpers ----------

async function postJson(url, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken(form ?? document) },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null; // An HTML error page (a proxy, a 500): the caller reports the status.
  }
  return { ok: res.ok, status: res.status, data };
}

// ---------- adapters: only those trained on the chosen base model ----------

function filterAdapters() {
  const base = ui.base.value;
  let any = false;
  for (const select of ui.slots) {
    for (const opt of select.options) {
      if (!opt.dataset.base) continue;
      const fits = opt.dataset.base === base;
      opt.hidden = !fits;
      opt.disabled = !fits; // hidden alone does not stop keyboard selection everywhere
      any ||= fits;
    }
    if (select.selectedOptions[0]?.disabled) select.value = "";
  }
  for (const select of ui.slots) select.disabled = !any;
  if (ui.noAdapters) ui.noAdapters.hidden = any;
}

// The server preselects the adapters a link asks for (?adapters=old,new, ?adapter=id) and
// their base model; filterAdapters() keeps those selections, as they fit that base.

// ---------- the prompt shape each chosen adapter learned from ----------

function chosenAdapters() {
  return ui.slots.filter((s) => s.value && !s.disabled).map((s) => s.selectedOptions[0]);
}

/** Our fine-tunes train on their dataset's template, not the chat template: say which, per adapter. */
function showFormats() {
  const chosen = chosenAdapters();
  ui.formats?.replaceChildren(
    ...chosen.map((opt) => {
      const li = document.createElement("li");
      const name = opt.textContent.trim();
      li.textContent =
        opt.dataset.chat === "true"
          ? format(pgStrings.trainedOnChat, { name })
          : format(pgStrings.trainedOnTemplate, { name, template: JSON.stringify(opt.dataset.template ?? "") });
      return li;
    }),
  );
  if (ui.formats) ui.formats.hidden = !chosen.length;
}

/** A warning while the toggle disagrees with how a chosen adapter was trained. */
function warnFormat() {
  const chosen = chosenAdapters();
  let message = "";
  if (ui.chat.checked && chosen.some((o) => o.dataset.chat !== "true")) message = pgStrings.chatMismatch;
  else if (!ui.chat.checked && chosen.some((o) => o.dataset.chat === "true")) message = pgStrings.plainMismatch;
  ui.formatWarning.textContent = message ?? "";
  ui.formatWarning.hidden = !message;
}

/** Choosing adapters sets the toggle to the shape they were trained on (the user may still flip it). */
function defaultFormat() {
  const chosen = chosenAdapters();
  if (chosen.length) ui.chat.checked = chosen.every((o) => o.dataset.chat === "true");
  showFormats();
  warnFormat();
}

// ---------- errors ----------

const { clear: clearErrors, general: showGeneralError, fields: showFieldErrors } = formErrors(form, ui.error);

/** The API's {error: {message, fields}}: each field's message beside its input, the rest on top. */
function showApiError(error, status) {
  const title = error?.message ? `${pgStrings.invalid ?? ""} ${error.message}`.trim() : `${pgStrings.network ?? ""} (${status})`;
  showFieldErrors(error?.fields, title);
}

// ---------- the conversation ----------

// turns: the user and assistant turns so far; the system prompt is the box's, sent with each run.
const chat = { turns: [] };
{
  const kept = stored.get(chatKey, {});
  chat.turns = (Array.isArray(kept.turns) ? kept.turns : []).filter(
    (t) => t && (t.role === "user" || t.role === "assistant") && typeof t.content === "string",
  );
  if (ui.system && typeof kept.system === "string" && !ui.system.value) ui.system.value = kept.system;
}

function saveChat() {
  stored.set(chatKey, { turns: chat.turns, system: ui.system?.value ?? "" });
}

/** "{n} messages" in the page's language: the catalogue's plural form that this number takes. */
function countText(forms, n) {
  const rule = new Intl.PluralRules(document.documentElement.lang || "en").select(n);
  return format(forms?.[rule] ?? forms?.other ?? "{n}", { n });
}

/** The messages a run answers (or the export holds): system prompt, the turns, and `next`. */
function conversation(next) {
  const system = ui.system?.value.trim() ? [{ role: "system", content: ui.system.value }] : [];
  return [...system, ...chat.turns, ...(next ? [next] : [])];
}

function renderChat() {
  if (!ui.turns) return;
  ui.turns.replaceChildren(
    ...chat.turns.map((turn) => {
      const li = ui.turnTemplate.content.firstElementChild.cloneNode(true);
      li.classList.add(`pg-turn-${turn.role}`);
      li.querySelector(".pg-turn-role").textContent = pgStrings.roles?.[turn.role] ?? turn.role;
      li.querySelector(".pg-turn-text").textContent = turn.content;
      return li;
    }),
  );
  ui.chatBox.hidden = !chat.turns.length;
  ui.chatCount.textContent = countText(pgStrings.turns, conversation().length);
  ui.copied.hidden = true;
}

/**
 * One line of OpenAI chat JSONL: what the dataset import reads as a chat dataset. An exchange
 * whose answer is empty (the model stopped at once) is left out with its question: the import
 * refuses an empty message, and a blank answer teaches nothing.
 */
function jsonl() {
  const messages = conversation().filter((m, i, all) => {
    if (m.role === "assistant") return Boolean(m.content.trim());
    if (m.role === "user" && all[i + 1]?.role === "assistant") return Boolean(all[i + 1].content.trim());
    return true;
  });
  return `${JSON.stringify({ messages })}\n`;
}

async function copyJsonl() {
  ui.copied.hidden = false;
  try {
    await navigator.clipboard.writeText(jsonl());
    ui.copied.textContent = pgStrings.copied ?? "";
  } catch {
    ui.copied.textContent = pgStrings.copyFailed ?? ""; // plain http off localhost has no clipboard API
  }
}

function downloadJsonl() {
  const url = URL.createObjectURL(new Blob([jsonl()], { type: "application/jsonl" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `playground-chat-${form.dataset.projectId}-${new Date().toISOString().slice(0, 19).replace(/[T:]/g, "-")}.jsonl`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

function newChat() {
  if (chat.turns.length && !window.confirm(pgStrings.confirmNewChat ?? "")) return;
  chat.turns = [];
  saveChat();
  renderChat();
  if (!current || TERMINAL_STATES.has(current.state)) {
    ui.columns.replaceChildren();
    ui.placeholder.hidden = false;
  }
  ui.prompt.focus();
}

/** A finished run: its question and the first column's answer join the conversation. */
function commitTurn(run) {
  if (run.committed || run !== current) return;
  run.committed = true;
  chat.turns.push({ role: "user", content: run.prompt }, { role: "assistant", content: run.columns[0]?.text.data ?? "" });
  run.picked = 0;
  saveChat();
  renderChat();
  if (ui.prompt.value === run.prompt) ui.prompt.value = "";
  markPicked(run);
}

/** Several columns: any one of them can be the answer the conversation goes on from. */
function markPicked(run) {
  if (run.columns.length < 2) return;
  run.columns.forEach((col, i) => {
    const box = col.el.querySelector(".pg-column-pick");
    box.hidden = false;
    box.querySelector(".pg-pick").hidden = i === run.picked;
    box.querySelector(".pg-picked").hidden = i !== run.picked;
  });
}

function pick(run, index) {
  const last = chat.turns[chat.turns.length - 1];
  if (run !== current || !run.committed || last?.role !== "assistant") return;
  last.content = run.columns[index].text.data;
  run.picked = index;
  saveChat();
  renderChat();
  markPicked(run);
}

// ---------- system prompt presets ----------

function savedPresets() {
  return stored.get(presetsKey, []).filter((p) => p && typeof p.name === "string" && typeof p.text === "string");
}

function option(value, label) {
  const opt = document.createElement("option");
  opt.value = value;
  opt.textContent = label;
  return opt;
}

function renderPresets(selected = "") {
  if (!ui.preset) return;
  ui.presetsBuiltin.replaceChildren(...builtinPresets.map((p, i) => option(`b${i}`, p.name)));
  const saved = savedPresets();
  ui.presetsSaved.replaceChildren(...saved.map((p, i) => option(`s${i}`, p.name)));
  ui.presetsSaved.hidden = !saved.length;
  ui.preset.value = selected;
  ui.presetDelete.hidden = !ui.preset.value.startsWith("s");
}

function presetAt(value) {
  const list = value.startsWith("b") ? builtinPresets : savedPresets();
  return list[Number(value.slice(1))];
}

function choosePreset() {
  const preset = ui.preset.value ? presetAt(ui.preset.value) : null;
  if (preset) {
    ui.system.value = preset.text;
    saveChat();
  }
  ui.presetDelete.hidden = !ui.preset.value.startsWith("s");
}

function savePreset() {
  const text = ui.system.value.trim();
  if (!text) {
    showFieldErrors({ system: pgStrings.presetEmpty });
    return;
  }
  const name = window.prompt(pgStrings.presetName ?? "", text.slice(0, 40))?.trim();
  if (!name) return;
  const saved = savedPresets().filter((p) => p.name !== name);
  saved.push({ name, text: ui.system.value });
  stored.set(presetsKey, saved);
  renderPresets(`s${saved.length - 1}`);
}

function deletePreset() {
  if (!ui.preset.value.startsWith("s")) return;
  const saved = savedPresets();
  saved.splice(Number(ui.preset.value.slice(1)), 1);
  stored.set(presetsKey, saved);
  renderPresets();
}

// ---------- recent outputs: current without a reload ----------

const refreshedJobs = new Set();

/** Swap in the server's fresh "Recent outputs" table (the page's own rendering, permissions and all). */
async function refreshRecent() {
  try {
    const res = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!res.ok) return;
    const fresh = new DOMParser().parseFromString(await res.text(), "text/html").getElementById("pg-recent");
    if (fresh) $("pg-recent")?.replaceWith(document.importNode(fresh, true));
  } catch {
    /* the next finished run tries again */
  }
}

let refreshTimer = null;

/** The project's socket: a text generation that succeeded and is not in the table yet refreshes it. */
function watchProject() {
  connectLive({
    path: `/ws/projects/${form.dataset.projectId}/`,
    onMessage: (msg) => {
      const job = msg.type === "job" ? msg.job : null;
      if (!job || job.kind !== "textgen" || job.state !== "succeeded" || refreshedJobs.has(job.id)) return;
      refreshedJobs.add(job.id);
      if (document.querySelector(`#pg-recent tr[data-job-id="${Number(job.id)}"]`)) return;
      clearTimeout(refreshTimer); // several at once (a reconnect's catch-up): one fetch
      refreshTimer = setTimeout(refreshRecent, 250);
    },
  });
}

// ---------- the request ----------

/** The textgen params: adapter_ids lists the columns in order, null being the base model. */
function collectParams() {
  const adapterIds = [];
  if (ui.runBase.checked) adapterIds.push(null);
  for (const select of ui.slots) if (select.value && !select.disabled) adapterIds.push(Number(select.value));
  const params = {
    base_model_id: Number(ui.base.value),
    adapter_ids: adapterIds,
    prompt: ui.prompt.value,
    system: ui.system.value,
    use_chat_template: ui.chat.checked,
    use_adapter_template: true,
    messages: conversation({ role: "user", content: ui.prompt.value }),
  };
  for (const el of form.querySelectorAll(".pg-settings [name]")) {
    if (el.type === "hidden" || el.value.trim() === "") continue; // empty: the schema's default
    if (el.type === "checkbox") params[el.name] = el.checked;
    else if (el.dataset.type === "integer" || el.dataset.type === "number") {
      const n = Number(el.value);
      params[el.name] = Number.isFinite(n) ? n : el.value; // the server names a bad value
    } else params[el.name] = el.value;
  }
  return params;
}

function columnLabels(adapterIds) {
  return adapterIds.map((id) => {
    if (id == null) return { title: pgStrings.baseModel ?? "Base model", meta: ui.base.selectedOptions[0]?.dataset.name ?? "" };
    const opt = ui.slots[0] && [...ui.slots[0].options].find((o) => o.value === String(id));
    return { title: opt?.textContent.trim() ?? `#${id}`, meta: "LoRA" };
  });
}

// ---------- one run ----------

let current = null; // { id, lastSeq, state, columns: [{el, text, stats}] }

function setRunning(running) {
  const grid = form.closest(".pg-grid");
  if (grid) grid.dataset.running = String(running); // CSS shows a caret in the columns meanwhile
  ui.run.disabled = running;
  ui.stop.hidden = !running;
  ui.stop.disabled = false;
}

function setState(run, state) {
  if (!state) return;
  // Shown at the click: an event of the run's earlier life arriving late must not undo it.
  if (run.state === "cancelling" && (state === "queued" || state === "running")) return;
  if (TERMINAL_STATES.has(run.state) && !TERMINAL_STATES.has(state)) return;
  run.state = state;
  ui.state.hidden = false;
  ui.state.className = `badge state-${state}`;
  ui.state.textContent = strings.states?.[state] ?? state;
  ui.progress.className = `progress state-${state}`;
  if (TERMINAL_STATES.has(state)) {
    setRunning(false);
    if (state === "succeeded") setProgress(ui.progress, 1);
  }
}

function buildColumns(labels) {
  ui.columns.replaceChildren();
  ui.columns.style.setProperty("--pg-cols", String(Math.max(1, labels.length)));
  return labels.map(({ title, meta }) => {
    const el = ui.columnTemplate.content.firstElementChild.cloneNode(true);
    el.querySelector(".pg-column-title").textContent = title;
    el.querySelector(".pg-column-meta").textContent = meta;
    const pre = el.querySelector(".pg-text");
    const text = document.createTextNode(""); // one node, grown with appendData: text, never HTML
    pre.append(text);
    ui.columns.append(el);
    return { el, pre, text, stats: el.querySelector(".pg-column-stats") };
  });
}

function addLogLine(message, level) {
  ui.log.querySelector(".pg-hint")?.remove(); // the worker speaks: the "waiting" hint is done
  const li = document.createElement("li");
  li.className = `log-${String(level || "info").toLowerCase()}`;
  li.textContent = message;
  ui.log.append(li);
  ui.log.hidden = false;
}

// The worker ends with one line per run (apps/playground/runners.py writes it):
// "[i] name: N tokens, X tokens/s on cpu (int8-dynamic), model loaded in 1.2s" or "…, model was warm".
const STATS_LINE =
  /^\[(\d+)\] .*?: (\d+) tokens, ([\d.]+) tokens\/s on (\S+)( \([^)]*\))?, (?:model loaded in ([\d.]+)s|model was warm)$/;

/** A run's figures from its last log line, worded from the page's catalogue (the log stays as the
 * worker wrote it). */
function runStats(message) {
  const m = STATS_LINE.exec(message);
  if (!m) return null;
  const [, index, tokens, speed, device, quantization, load] = m;
  const values = { tokens, speed, device: device + (quantization ?? ""), load };
  const text = format(load == null ? pgStrings.statsWarm : pgStrings.statsLoaded, values);
  return { index: Number(index), text };
}

function applyEvent(run, kind, data) {
  switch (kind) {
    case "text": {
      const col = run.columns[Number(data.index) || 0];
      if (!col) break;
      col.text.appendData(String(data.delta ?? ""));
      col.el.classList.add("has-text");
      break;
    }
    case "progress": {
      let f = data.fraction;
      if (f == null && Number(data.total) > 0) f = Number(data.step) / Number(data.total);
      if (f != null) setProgress(ui.progress, f);
      break;
    }
    case "log": {
      const message = String(data.message ?? "");
      addLogLine(message, data.level);
      const stats = runStats(message);
      if (stats && run.columns[stats.index]) run.columns[stats.index].stats.textContent = stats.text;
      break;
    }
    case "state":
      if (data.state !== "queued") ui.log.querySelector(".pg-hint")?.remove();
      setState(run, data.state);
      // After the last text event (events are in order): the answers are whole now.
      if (data.state === "succeeded") commitTurn(run);
      if (data.error) {
        ui.jobErrorText.textContent = data.error;
        ui.jobError.hidden = false;
      }
      break;
    default:
      break; // metrics, artifacts…: the job page shows those.
  }
}

function follow(run) {
  followJob(run, {
    isCurrent: () => run === current,
    onSnapshot: (job) => {
      setState(run, job.state);
      if (job.progress != null) setProgress(ui.progress, job.progress);
    },
    onEvent: (kind, data) => applyEvent(run, kind, data),
    onStatus: (status) => {
      ui.live.hidden = false;
      bindIndicator(ui.live, strings)(status);
    },
  });
}

function startRun(job, adapterIds, prompt) {
  const run = { id: job.id, lastSeq: 0, state: "", columns: [], prompt, committed: false, picked: 0 };
  current = run;
  ui.placeholder.hidden = true;
  ui.jobError.hidden = true;
  ui.log.replaceChildren();
  ui.log.hidden = true;
  ui.progress.hidden = false;
  setProgress(ui.progress, 0);
  ui.jobLink.hidden = false;
  ui.jobLink.href = job.url;
  ui.jobLink.textContent = format(pgStrings.job ?? "#{id}", { id: job.id });
  run.columns = buildColumns(columnLabels(adapterIds));
  run.columns.forEach((col, i) => col.el.querySelector(".pg-pick").addEventListener("click", () => pick(run, i)));
  setState(run, job.state);
  if (!TERMINAL_STATES.has(job.state)) {
    setRunning(true);
    addLogLine(pgStrings.preparing ?? "", "debug");
    ui.log.lastElementChild.classList.add("pg-hint");
  }
  follow(run);
}

async function submit(ev) {
  ev.preventDefault();
  if (ui.run.disabled) return;
  clearErrors();
  const params = collectParams();
  if (!params.prompt.trim()) {
    showFieldErrors({ prompt: pgStrings.emptyPrompt });
    ui.prompt.focus();
    return;
  }
  if (!params.adapter_ids.length) {
    showGeneralError(pgStrings.chooseOne ?? "");
    return;
  }
  const ids = params.adapter_ids.filter((i) => i != null);
  if (new Set(ids).size !== ids.length) {
    showGeneralError(pgStrings.sameAdapter ?? "");
    return;
  }
  ui.run.disabled = true;
  try {
    const { ok, status, data } = await postJson(form.dataset.jobsApi, { kind: "textgen", params });
    if (!ok || !data || data.error) {
      ui.run.disabled = false;
      showApiError(data?.error, status);
      return;
    }
    startRun(data, params.adapter_ids, params.prompt);
  } catch {
    ui.run.disabled = false;
    showGeneralError(pgStrings.network ?? "");
  }
}

async function stop() {
  const run = current;
  if (!run || TERMINAL_STATES.has(run.state)) return;
  if (!window.confirm(pgStrings.confirmStop ?? "")) return;
  const before = run.state;
  ui.stop.disabled = true;
  setState(run, "cancelling"); // at the click, not when the worker gets round to it
  try {
    const { ok, status, data } = await postJson(`${form.dataset.jobsApi}${run.id}/cancel/`);
    if (ok) {
      setState(run, data?.state); // a queued job is cancelled at once; a running one stops at its next token
    } else if (status !== 409) {
      // 409: it had already finished; the websocket brings the final state either way.
      run.state = before;
      setState(run, before);
      ui.stop.disabled = false;
      showGeneralError(`${pgStrings.stopFailed ?? ""} ${data?.error?.message ?? status}`);
    }
  } catch {
    run.state = before;
    setState(run, before);
    ui.stop.disabled = false;
    showGeneralError(pgStrings.network ?? "");
  }
}

if (form && ui.base) {
  ui.base.addEventListener("change", () => {
    filterAdapters();
    defaultFormat();
  });
  filterAdapters();
  defaultFormat();
  for (const select of ui.slots) select.addEventListener("change", defaultFormat);
  ui.chat.addEventListener("change", warnFormat);
  renderChat();
  renderPresets();
  watchProject();
  ui.copy.addEventListener("click", copyJsonl);
  ui.exportFile.addEventListener("click", downloadJsonl);
  if (form.dataset.canLaunch === "true") {
    form.addEventListener("submit", submit);
    ui.stop.addEventListener("click", stop);
    ui.newChat.addEventListener("click", newChat);
    ui.preset.addEventListener("change", choosePreset);
    ui.presetSave.addEventListener("click", savePreset);
    ui.presetDelete.addEventListener("click", deletePreset);
    ui.system.addEventListener("change", saveChat);
    // Ctrl/Cmd+Enter in the prompt runs it, as in most chat tools.
    ui.prompt.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
    });
  }
}
