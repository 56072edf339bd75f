// Text playground: submits a "textgen" job through the JSON API, then follows the job's websocket
// and streams each run's text into its own column. The job (not this page) is the source of truth:
// reloading the job page replays the same events, and the outputs are saved server-side.

import { TERMINAL_STATES, bindIndicator, csrfToken, followJob, formErrors, format, loadStrings, setProgress } from "./live.js";

const $ = (id) => document.getElementById(id);
const form = $("pg-form");
const strings = loadStrings();
const pgStrings = (() => {
  try {
    return JSON.parse($("playground-strings")?.textContent ?? "{}");
  } catch {
    return {};
  }
})();

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
};

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

// ---------- errors ----------

const { clear: clearErrors, general: showGeneralError, fields: showFieldErrors } = formErrors(form, ui.error);

/** The API's {error: {message, fields}}: each field's message beside its input, the rest on top. */
function showApiError(error, status) {
  const title = error?.message ? `${pgStrings.invalid ?? ""} ${error.message}`.trim() : `${pgStrings.network ?? ""} (${status})`;
  showFieldErrors(error?.fields, title);
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
      // The worker ends with one line per run: "[i] name: N tokens, X tokens/s on cpu, model was warm".
      const m = /^\[(\d+)\][^:]*:\s*(.+)$/.exec(message);
      if (m && run.columns[Number(m[1])]) run.columns[Number(m[1])].stats.textContent = m[2];
      break;
    }
    case "state":
      if (data.state !== "queued") ui.log.querySelector(".pg-hint")?.remove();
      setState(run, data.state);
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

function startRun(job, adapterIds) {
  const run = { id: job.id, lastSeq: 0, state: "", columns: [] };
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
    startRun(data, params.adapter_ids);
  } catch {
    ui.run.disabled = false;
    showGeneralError(pgStrings.network ?? "");
  }
}

async function stop() {
  if (!current) return;
  ui.stop.disabled = true;
  try {
    const { ok, status, data } = await postJson(`${form.dataset.jobsApi}${current.id}/cancel/`);
    // 409: it had already finished; the websocket brings the final state either way.
    if (!ok && status !== 409) showGeneralError(`${pgStrings.stopFailed ?? ""} ${data?.error?.message ?? status}`);
  } catch {
    ui.stop.disabled = false;
    showGeneralError(pgStrings.network ?? "");
  }
}

if (form && ui.base) {
  ui.base.addEventListener("change", filterAdapters);
  filterAdapters();
  if (form.dataset.canLaunch === "true") {
    form.addEventListener("submit", submit);
    ui.stop.addEventListener("click", stop);
    // Ctrl/Cmd+Enter in the prompt runs it, as in most chat tools.
    ui.prompt.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
    });
  }
}
