// Image generation: submits an "image.generate" job through the JSON API, then follows the job's
// websocket: progress per denoising step, the latest preview image, the log, and the finished
// images (read from the job's result) linking to their gallery pages. The job, not this page, is
// the source of truth: the images are saved server-side whatever happens to this tab.

import { bindIndicator, connectLive, csrfToken, followJob, format, formErrors, formParams, loadStrings, pageStrings, setProgress, TERMINAL_STATES } from "./live.js";

const $ = (id) => document.getElementById(id);
const form = $("im-form");
const strings = loadStrings();
const imStrings = pageStrings("images-strings");

const ui = {
  model: $("im-model_id"),
  modelHelp: $("im-model_id-help"),
  prompt: $("im-prompt"),
  seed: $("im-seed"),
  dice: $("im-dice"),
  recycle: $("im-recycle"),
  width: $("im-width"),
  height: $("im-height"),
  init: $("im-init_output_id"),
  hiresOn: $("im-hires-on"),
  controlOn: $("im-controlnet-on"),
  control: $("im-control_output_id"),
  run: $("im-run"),
  stop: $("im-stop"),
  error: $("im-error"),
  jobLink: $("im-job-link"),
  state: $("im-state"),
  live: $("im-live"),
  progressRow: $("im-progress-row"),
  progress: $("im-progress"),
  step: $("im-step"),
  jobError: $("im-job-error"),
  jobErrorText: $("im-job-error-text"),
  placeholder: $("im-placeholder"),
  preview: $("im-preview"),
  previewImg: $("im-preview-img"),
  results: $("im-results"),
  log: $("im-log"),
  resultTemplate: $("im-result-template"),
};

// ---------- helpers ----------

async function requestJson(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken(form ?? document);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url, {
    method,
    headers,
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

/** Only same-page-safe image sources: http(s) links, and data:image/… previews from the worker. */
function safeImageUrl(url) {
  if (!url) return null;
  const s = String(url);
  if (/^data:image\/(png|jpeg|webp|gif);base64,/i.test(s)) return s;
  try {
    const u = new URL(s, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

function galleryUrl(id) {
  return `${form.dataset.galleryUrl}${encodeURIComponent(id)}/`;
}

// ---------- the form ----------

function showModelNote() {
  const opt = ui.model?.selectedOptions[0];
  if (ui.modelHelp) ui.modelHelp.textContent = opt?.dataset.note ?? "";
}

// A model may suggest values for some fields (data-suggested on its option: sampler, steps, CFG,
// size, hi-res settings; the digits demo draws well only with its own). Picking another model
// moves each field still at the previous model's value (or the page's default, when it suggested
// none) to the new model's; a value the user chose stays.
function parseJson(text) {
  try {
    const value = JSON.parse(text ?? "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

const plainDefaults = parseJson(form?.dataset.plainDefaults);
const suggestionsOf = (option) => parseJson(option?.dataset.suggested);
let lastSuggested = suggestionsOf(ui.model?.selectedOptions[0]);

function sameValue(current, expected) {
  if (expected === undefined || expected === null) return false;
  if (typeof expected === "number") return current.trim() !== "" && Number(current) === expected;
  return current.toLowerCase() === String(expected).toLowerCase();
}

function canShow(el, value) {
  return el.tagName !== "SELECT" || [...el.options].some((o) => o.value === String(value));
}

function applyModelSuggestions() {
  const next = suggestionsOf(ui.model?.selectedOptions[0]);
  for (const name of new Set([...Object.keys(lastSuggested), ...Object.keys(next)])) {
    const el = form.elements.namedItem(name);
    const want = next[name] ?? plainDefaults[name];
    if (!el || el.type === "checkbox" || want === undefined || want === null) continue;
    if (sameValue(el.value, lastSuggested[name] ?? plainDefaults[name]) && canShow(el, want)) {
      el.value = String(want);
    }
  }
  lastSuggested = next;
}

/** PNG info sends the model by name (?model=…); the view keeps only known fields, so map it here. */
function preselectFromUrl() {
  const q = new URLSearchParams(location.search);
  const name = q.get("model");
  if (name && ui.model && !q.get("model_id")) {
    const wanted = name.trim().toLowerCase();
    const opt = [...ui.model.options].find((o) => (o.dataset.name ?? "").toLowerCase() === wanted);
    if (opt) ui.model.value = opt.value;
  }
  for (const field of ["init_output_id", "control_output_id"]) {
    const v = q.get(field);
    const el = form.elements.namedItem(field);
    if (v && el && !el.value && /^\d+$/.test(v)) el.value = v;
  }
}

/** A section whose switch is on, or whose image is chosen, starts open. */
function openUsedSections() {
  if (ui.init?.value) $("im-img2img").open = true;
  if (ui.hiresOn?.checked) $("im-hires").open = true;
  if (ui.controlOn?.checked || ui.control?.value) $("im-controlnet").open = true;
}

function syncSections() {
  for (const [toggle, section] of [
    [ui.hiresOn, $("im-hires")],
    [ui.controlOn, $("im-controlnet")],
  ]) {
    if (toggle && section) section.dataset.on = String(toggle.checked);
  }
}

// ---------- errors ----------

// clearErrors, showGeneralError, showFieldErrors: live.js's formErrors for this form.
const { clear: clearErrors, general: showGeneralError, fields: showFieldErrors } = formErrors(form, ui.error);

function showApiError(error, status) {
  const title = error?.message ? `${imStrings.invalid ?? ""} ${error.message}`.trim() : `${imStrings.network ?? ""} (${status})`;
  showFieldErrors(error?.fields, title);
}

// ---------- the request ----------

/** Every named input as a typed job parameter; an empty number means "the default". */
function collectParams() {
  return formParams(form);
}

/** The checks a person would otherwise wait a round trip for; the server checks everything again. */
function localErrors(params) {
  const errors = {};
  if (!String(params.prompt ?? "").trim()) errors.prompt = imStrings.emptyPrompt;
  for (const name of ["width", "height"]) {
    if (Number.isInteger(params[name]) && params[name] % 8 !== 0) errors[name] = imStrings.multipleOf8;
  }
  if (params.controlnet && !params.control_output_id) errors.control_output_id = imStrings.needControl;
  return errors;
}

// ---------- one run ----------

let current = null; // { id, lastSeq, state, shown: Set<output id>, fetching }
let lastSeed = null;

function setRunning(running) {
  ui.run.disabled = running;
  ui.stop.hidden = !running;
  ui.stop.disabled = false;
  form.closest(".im-grid")?.setAttribute("data-running", String(running));
}

function setState(run, state) {
  if (!state) return;
  const was = run.state;
  run.state = state;
  ui.state.hidden = false;
  ui.state.className = `badge state-${state}`;
  ui.state.textContent = strings.states?.[state] ?? state;
  ui.progress.className = `progress state-${state}`;
  if (TERMINAL_STATES.has(state)) {
    setRunning(false);
    ui.log.querySelector(".pg-hint")?.remove();
    if (state === "succeeded") {
      setProgress(ui.progress, 1);
      ui.step.textContent = "";
    }
    // Finished (or stopped with some images done): the job's result lists what was saved.
    if (was !== state) fetchResults(run);
  }
}

function addLogLine(message, level) {
  ui.log.querySelector(".pg-hint")?.remove(); // the worker speaks: the "waiting" hint is done
  const li = document.createElement("li");
  li.className = `log-${String(level || "info").toLowerCase()}`;
  li.textContent = message;
  ui.log.append(li);
  ui.log.hidden = false;
  ui.log.scrollTop = ui.log.scrollHeight;
}

function showPreview(url) {
  const src = safeImageUrl(url);
  if (!src) return;
  ui.previewImg.src = src; // always the latest step's image
  ui.preview.hidden = false;
  ui.placeholder.hidden = true;
}

function addResult(run, out) {
  const id = out?.id;
  if (id == null || run.shown.has(String(id))) return;
  run.shown.add(String(id));
  const li = ui.resultTemplate.content.firstElementChild.cloneNode(true);
  const link = li.querySelector(".im-result-link");
  link.href = galleryUrl(id);
  link.title = format(imStrings.image ?? "#{id}", { id });
  const img = li.querySelector(".im-result-img");
  const src = safeImageUrl(out.thumb_url) ?? safeImageUrl(out.url);
  if (src) img.src = src;
  img.alt = format(imStrings.image ?? "#{id}", { id });
  if (Number(out.width) > 0 && Number(out.width) <= 128) img.classList.add("gl-pixel");
  const seedEl = li.querySelector(".im-result-seed");
  const useSeed = li.querySelector(".im-use-seed");
  if (out.seed != null) {
    seedEl.textContent = format(imStrings.seed ?? "{seed}", { seed: out.seed });
    useSeed.addEventListener("click", () => {
      ui.seed.value = String(out.seed);
      ui.seed.focus();
    });
    lastSeed = out.seed;
    if (ui.recycle) ui.recycle.disabled = false;
  } else {
    useSeed.remove();
  }
  li.querySelector(".im-use-init").addEventListener("click", () => useAsInit(id));
  ui.results.append(li);
  ui.results.hidden = false;
  ui.placeholder.hidden = true;
}

/** The job's result: {outputs: [{id, url, thumb_url, seed}]}. Calls overlapping each other are merged. */
async function fetchResults(run) {
  if (run.fetching) {
    run.refetch = true;
    return;
  }
  run.fetching = true;
  try {
    const { ok, data } = await requestJson(`${form.dataset.jobsApi}${run.id}/`);
    if (ok && data && run === current) {
      for (const out of data.result?.outputs ?? []) addResult(run, out);
      if (ui.results.children.length && TERMINAL_STATES.has(run.state)) ui.preview.hidden = true; // the real images replace it
    }
  } catch {
    // The images are in the gallery either way; the next artifact or the final state tries again.
  } finally {
    run.fetching = false;
    if (run.refetch) {
      run.refetch = false;
      fetchResults(run);
    }
  }
}

function applyEvent(run, kind, data) {
  switch (kind) {
    case "progress": {
      let f = data.fraction;
      if (f == null && Number(data.total) > 0) f = Number(data.step) / Number(data.total);
      if (f != null) setProgress(ui.progress, f);
      if (data.step != null && data.total != null) {
        ui.step.textContent = format(strings.stepOf ?? "{step}/{total}", { step: data.step, total: data.total });
      }
      break;
    }
    case "preview":
      showPreview(data.url);
      break;
    case "artifact":
      // An artifact that names its output can be shown at once; otherwise ask the job.
      if (data.output_id != null && (data.thumb_url || data.url)) {
        addResult(run, { id: data.output_id, url: data.url, thumb_url: data.thumb_url, seed: data.seed, width: data.width });
      } else {
        fetchResults(run);
      }
      break;
    case "log":
      addLogLine(String(data.message ?? ""), data.level);
      break;
    case "state":
      if (data.state !== "queued") ui.log.querySelector(".pg-hint")?.remove();
      setState(run, data.state);
      if (data.error) {
        ui.jobErrorText.textContent = data.error;
        ui.jobError.hidden = false;
      }
      break;
    default:
      break; // metrics and newer kinds: the job page shows those.
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

function startRun(job) {
  const run = { id: job.id, lastSeq: 0, state: "", shown: new Set(), fetching: false, refetch: false };
  current = run;
  ui.placeholder.hidden = true;
  ui.jobError.hidden = true;
  ui.preview.hidden = true;
  ui.previewImg.removeAttribute("src");
  ui.results.replaceChildren();
  ui.results.hidden = true;
  ui.log.replaceChildren();
  ui.log.hidden = true;
  ui.progressRow.hidden = false;
  ui.step.textContent = "";
  setProgress(ui.progress, 0);
  ui.jobLink.hidden = false;
  ui.jobLink.href = job.url ?? `/projects/${form.dataset.projectId}/jobs/${job.id}/`;
  ui.jobLink.textContent = format(imStrings.job ?? "#{id}", { id: job.id });
  if (!TERMINAL_STATES.has(job.state)) {
    setRunning(true);
    addLogLine(imStrings.preparing ?? "", "debug");
    ui.log.lastElementChild.classList.add("pg-hint");
  }
  setState(run, job.state);
  follow(run);
}

async function submit(ev) {
  ev.preventDefault();
  if (ui.run.disabled) return;
  clearErrors();
  const params = collectParams();
  const local = localErrors(params);
  if (Object.keys(local).length) {
    showFieldErrors(local);
    return;
  }
  ui.run.disabled = true;
  try {
    const { ok, status, data } = await requestJson(form.dataset.jobsApi, {
      method: "POST",
      body: { kind: "image.generate", params },
    });
    if (!ok || !data || data.error) {
      ui.run.disabled = false;
      showApiError(data?.error, status);
      return;
    }
    startRun(data);
  } catch {
    ui.run.disabled = false;
    showGeneralError(imStrings.network ?? "");
  }
}

async function stop() {
  if (!current) return;
  ui.stop.disabled = true;
  try {
    const { ok, status, data } = await requestJson(`${form.dataset.jobsApi}${current.id}/cancel/`, { method: "POST" });
    // 409: it had already finished; the websocket brings the final state either way.
    if (!ok && status !== 409) {
      ui.stop.disabled = false;
      showGeneralError(`${imStrings.stopFailed ?? ""} ${data?.error?.message ?? status}`);
    }
  } catch {
    ui.stop.disabled = false;
    showGeneralError(imStrings.network ?? "");
  }
}

function useAsInit(id) {
  if (!ui.init || ui.init.closest("fieldset")?.disabled) return;
  ui.init.value = String(id);
  const section = $("im-img2img");
  section.open = true;
  section.scrollIntoView({ block: "nearest", behavior: "smooth" });
  ui.init.focus({ preventScroll: true });
  ui.init.classList.remove("im-flash");
  void ui.init.offsetWidth; // restart the highlight animation
  ui.init.classList.add("im-flash");
}

if (form && ui.model) {
  preselectFromUrl();
  applyModelSuggestions(); // PNG info may have picked another model than the one the page chose
  showModelNote();
  openUsedSections();
  syncSections();
  ui.model.addEventListener("change", () => {
    showModelNote();
    applyModelSuggestions();
  });
  ui.hiresOn?.addEventListener("change", syncSections);
  ui.controlOn?.addEventListener("change", syncSections);
  // LoRA and embedding chips insert their text at the cursor of the prompt last focused.
  let promptTarget = ui.prompt;
  for (const el of form.querySelectorAll("textarea")) el.addEventListener("focus", () => (promptTarget = el));
  for (const chip of form.querySelectorAll(".im-insert")) {
    chip.addEventListener("click", () => {
      const el = promptTarget ?? ui.prompt;
      const text = chip.dataset.insert;
      const start = el.selectionStart ?? el.value.length;
      const end = el.selectionEnd ?? start;
      const before = el.value.slice(0, start);
      const pad = before && !/[\s,(]$/.test(before) ? ", " : "";
      el.value = before + pad + text + el.value.slice(end);
      const caret = start + pad.length + text.length;
      el.focus();
      el.setSelectionRange(caret, caret);
    });
  }
  // Choosing a control image means wanting ControlNet.
  ui.control?.addEventListener("change", () => {
    if (ui.control.value && ui.controlOn && !ui.controlOn.checked) {
      ui.controlOn.checked = true;
      syncSections();
    }
  });
  if (form.dataset.canLaunch === "true") {
    form.addEventListener("submit", submit);
    ui.stop.addEventListener("click", stop);
    ui.dice?.addEventListener("click", () => {
      ui.seed.value = "-1";
    });
    ui.recycle?.addEventListener("click", () => {
      if (lastSeed != null) ui.seed.value = String(lastSeed);
    });
    // Ctrl/Cmd+Enter in a prompt runs it, as in Stable Diffusion WebUI.
    for (const el of form.querySelectorAll("textarea")) {
      el.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
      });
    }
    // Delegated: the Recent images section is replaced when new images arrive (watchRecent).
    document.addEventListener("click", (ev) => {
      const button = ev.target instanceof Element ? ev.target.closest(".im-pick[data-output-id]") : null;
      if (button) useAsInit(button.dataset.outputId);
    });
  }
}
if ((form && ui.model) || $("im-queue")) watchRecent();

// ---------- Recent images and Your queue, live ----------

const IMAGE_KINDS = new Set(["image.generate", "image.xyz", "image.upscale"]);
const refreshedJobs = new Set();
const pendingSections = new Set();
let recentTimer = null;

/** Fetch the page once and swap the named sections in (their own markup, server-rendered). */
async function refreshSections(ids) {
  try {
    const res = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    for (const id of ids) {
      const fresh = doc.getElementById(id);
      if (fresh) $(id)?.replaceWith(document.importNode(fresh, true));
    }
  } catch {
    /* the next change tries again */
  }
}

/** Several changes at once (a reconnect's catch-up, a batch finishing) make one fetch. */
function scheduleRefresh(id) {
  pendingSections.add(id);
  clearTimeout(recentTimer);
  recentTimer = setTimeout(() => {
    const ids = [...pendingSections];
    pendingSections.clear();
    refreshSections(ids);
  }, 250);
}

// ---------- Your queue ----------
// The member's waiting jobs (templates/images/_queue.html): plain forms, posted here with fetch
// so the page (and a run being followed) stays; then the section is fetched again.

const queueStates = new Map(); // job id -> the last state the project's socket reported

function queueHas(id) {
  return Boolean($("im-queue")?.querySelector(`.im-queue-item[data-job-id="${Number(id)}"]`));
}

/** Whether a job's news changes "Your queue": one of its jobs started, ended or was cancelled,
 * the member submitted another (in this tab or elsewhere), or anyone's job started or ended
 * (the count of others' jobs ahead). Progress pushes of a running job change nothing. */
function queueChangedBy(job) {
  const section = $("im-queue");
  if (!section) return false;
  const before = queueStates.get(job.id);
  queueStates.set(job.id, job.state);
  if (before === undefined) {
    if (job.state === "queued") return job.created_by === section.dataset.user && !queueHas(job.id);
    // One of its jobs moved on, or someone's job started while others' jobs are counted ahead.
    return queueHas(job.id) || (job.state === "running" && Boolean($("im-queue-ahead")));
  }
  return before !== job.state;
}

async function queueSubmit(ev) {
  const formEl = ev.target instanceof HTMLFormElement ? ev.target : null;
  const section = formEl?.closest("#im-queue");
  if (!section) return;
  ev.preventDefault();
  const box = $("im-queue-error");
  if (box) box.hidden = true;
  section.setAttribute("aria-busy", "true");
  try {
    const res = await fetch(formEl.action, {
      method: "POST",
      body: new FormData(formEl, ev.submitter ?? undefined),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      redirect: "manual", // the cancel form answers with a redirect to the job's page
    });
    if (!res.ok && res.type !== "opaqueredirect") {
      let message = String(res.status);
      try {
        message = (await res.json()).error ?? message;
      } catch {
        /* an HTML error page: the status says enough */
      }
      if (box) {
        box.textContent = `${imStrings.queueFailed ?? ""} ${message}`.trim();
        box.hidden = false;
      }
    }
  } catch {
    if (box) {
      box.textContent = imStrings.network ?? "";
      box.hidden = false;
    }
  }
  const error = $("im-queue-error");
  const keep = error && !error.hidden ? error.textContent : "";
  await refreshSections(["im-queue"]);
  section.removeAttribute("aria-busy"); // still this element when the refresh failed
  if (keep && $("im-queue-error")) {
    $("im-queue-error").textContent = keep;
    $("im-queue-error").hidden = false;
  }
}

document.addEventListener("submit", queueSubmit);

/** The project's socket: an image job of anyone in the project that succeeded refreshes Recent
 * images, and a job that starts, ends or is submitted refreshes Your queue, without a reload. */
function watchRecent() {
  const projectId = form?.dataset.projectId ?? $("im-queue")?.dataset.projectId;
  if (!projectId) return;
  connectLive({
    path: `/ws/projects/${projectId}/`,
    onMessage: (msg) => {
      const job = msg.type === "job" ? msg.job : null;
      if (!job) return;
      if (queueChangedBy(job)) scheduleRefresh("im-queue");
      if (!IMAGE_KINDS.has(job.kind) || job.state !== "succeeded" || refreshedJobs.has(job.id)) return;
      refreshedJobs.add(job.id);
      scheduleRefresh("im-recent");
    },
  });
}
