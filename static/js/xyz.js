// The X/Y/Z plot section of the image page (templates/images/_xyz.html): posts the image form's
// parameters plus up to three axes as an "image.xyz" job, follows the job over its websocket
// (progress, state) and shows the labelled grid it saved. The single images go to the gallery
// as the job's other outputs.

import { csrfToken, followJob, format, formErrors, formParams, loadStrings, pageStrings, setProgress, TERMINAL_STATES } from "./live.js";

const $ = (id) => document.getElementById(id);
const section = $("im-xyz");
const form = $("im-form");
const strings = loadStrings();
const xyzStrings = pageStrings("xyz-strings");

const ui = {
  run: $("xyz-run"),
  stop: $("xyz-stop"),
  error: $("xyz-error"),
  output: $("xyz-output"),
  progress: $("xyz-progress"),
  state: $("xyz-state"),
  jobLink: $("xyz-job-link"),
  jobError: $("xyz-job-error"),
  grid: $("xyz-grid"),
  gridLink: $("xyz-grid-link"),
  gridImg: $("xyz-grid-img"),
  caption: $("xyz-grid-caption"),
};

let current = null; // { id, lastSeq, state }

/** The image form's named inputs as typed job parameters (what its Generate button sends). */
function imageFormParams() {
  const params = formParams(form);
  // One image per cell, as A1111's plot makes with "batch" left at one.
  params.batch_count = 1;
  params.batch_size = 1;
  return params;
}

/** The axes that vary something, in X, Y, Z order; {error} when one has no values. */
function collectAxes() {
  const axes = [];
  for (const row of section.querySelectorAll(".xyz-axis")) {
    const field = row.querySelector('[data-xyz="field"]').value;
    const values = row.querySelector('[data-xyz="values"]').value.trim();
    if (!field) continue;
    if (!values) return { error: format(xyzStrings.needValues ?? "{axis}", { axis: row.dataset.axis }) };
    const axis = { field, values };
    if (field === "lora_weight") axis.lora = row.querySelector('[data-xyz="lora"]').value;
    axes.push(axis);
  }
  return axes.length ? { axes } : { error: xyzStrings.needAxis ?? "" };
}

function syncLoraPickers() {
  for (const row of section.querySelectorAll(".xyz-axis")) {
    const field = row.querySelector('[data-xyz="field"]').value;
    row.querySelector("[data-xyz-lora]").hidden = field !== "lora_weight";
  }
}

async function requestJson(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken(form);
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
    data = null;
  }
  return { ok: res.ok, status: res.status, data };
}

function setRunning(running) {
  ui.run.disabled = running;
  ui.stop.hidden = !running;
  ui.stop.disabled = false;
}

function setState(run, state) {
  if (!state) return;
  const was = run.state;
  run.state = state;
  ui.state.hidden = false;
  ui.state.className = `badge state-${state}`;
  ui.state.textContent = strings.states?.[state] ?? state;
  if (TERMINAL_STATES.has(state)) {
    setRunning(false);
    if (state === "succeeded") setProgress(ui.progress, 1);
    if (was !== state) showGrid(run);
  }
}

/** The job's result: {grid: {url, output_id}, outputs: [...]}. The grid's `url` is its gallery
 * page, which the picture links to; the picture itself is the output's full-size PNG. */
async function showGrid(run) {
  const { ok, data } = await requestJson(`${form.dataset.jobsApi}${run.id}/`).catch(() => ({ ok: false }));
  if (!ok || run !== current || !data?.result?.grid) return;
  const grid = data.result.grid;
  const id = Number(grid.output_id);
  if (!Number.isInteger(id) || id < 1) return;
  try {
    const page = new URL(grid.url, location.href);
    if (page.protocol !== "http:" && page.protocol !== "https:") return;
    // Never wider than the form's column (inline styles from script are allowed by the CSP).
    Object.assign(ui.grid.style, { margin: ".6rem 0 0" });
    Object.assign(ui.gridImg.style, { display: "block", maxWidth: "100%", height: "auto" });
    ui.gridImg.src = new URL(`${form.dataset.galleryUrl}${id}/image.png`, location.href).href;
    ui.gridLink.href = page.href;
  } catch {
    return;
  }
  ui.caption.textContent = format(xyzStrings.caption ?? "{count}", { count: (data.result.outputs ?? []).length });
  ui.grid.hidden = false;
}

function start(job) {
  const run = { id: job.id, lastSeq: 0, state: "" };
  current = run;
  ui.output.hidden = false;
  ui.grid.hidden = true;
  ui.gridImg.removeAttribute("src");
  ui.jobError.hidden = true;
  setProgress(ui.progress, 0);
  ui.jobLink.href = job.url ?? `/projects/${form.dataset.projectId}/jobs/${job.id}/`;
  ui.jobLink.textContent = format(xyzStrings.job ?? "#{id}", { id: job.id });
  if (!TERMINAL_STATES.has(job.state)) setRunning(true);
  setState(run, job.state);
  followJob(run, {
    isCurrent: () => run === current,
    onSnapshot: (snapshot) => {
      setState(run, snapshot.state);
      if (snapshot.progress != null) setProgress(ui.progress, snapshot.progress);
    },
    onEvent: (kind, data) => {
      if (kind === "progress" && Number(data.total) > 0) setProgress(ui.progress, Number(data.step) / Number(data.total));
      if (kind === "state") {
        setState(run, data.state);
        if (data.error) {
          ui.jobError.textContent = data.error;
          ui.jobError.hidden = false;
        }
      }
    },
  });
}

const errors = form && section ? formErrors(form, ui.error) : null;

async function submit() {
  errors.clear();
  const { axes, error } = collectAxes();
  if (error) {
    errors.fields({ axes: error });
    return;
  }
  ui.run.disabled = true;
  try {
    const { ok, status, data } = await requestJson(form.dataset.jobsApi, {
      method: "POST",
      body: { kind: "image.xyz", params: { ...imageFormParams(), axes } },
    });
    if (!ok || !data || data.error) {
      ui.run.disabled = false;
      const title = data?.error?.message ? `${xyzStrings.invalid ?? ""} ${data.error.message}`.trim() : `${xyzStrings.network ?? ""} (${status})`;
      errors.fields(data?.error?.fields, title);
      return;
    }
    start(data);
  } catch {
    ui.run.disabled = false;
    errors.general(xyzStrings.network ?? "");
  }
}

async function stop() {
  if (!current) return;
  ui.stop.disabled = true;
  const { ok, status } = await requestJson(`${form.dataset.jobsApi}${current.id}/cancel/`, { method: "POST" }).catch(() => ({ ok: false }));
  if (!ok && status !== 409) ui.stop.disabled = false; // 409: it had already finished
}

if (form && section && form.dataset.canLaunch === "true") {
  syncLoraPickers();
  for (const select of section.querySelectorAll('[data-xyz="field"]')) select.addEventListener("change", syncLoraPickers);
  ui.run.addEventListener("click", submit);
  ui.stop.addEventListener("click", stop);
} else if (ui.run) {
  ui.run.disabled = true;
}
