// Job page: replays the job's event log over the websocket, then follows it live.
// The server numbers events per job; we keep the highest seq applied and ask for "after" it on every
// (re)connect, so a reconnect neither loses nor repeats anything.

import { TERMINAL_STATES, bindIndicator, connectLive, format, loadStrings, setProgress } from "./live.js";

const MAX_LOG_LINES = 5000;
const CHART_HEIGHT = 180;
const PALETTE = ["#4f46e5", "#db2777", "#059669", "#d97706", "#0891b2", "#7c3aed", "#dc2626", "#65a30d"];

const root = document.getElementById("job-root");
const $ = (id) => document.getElementById(id);
const strings = loadStrings();

const ui = {
  state: $("job-state"),
  progress: $("job-progress"),
  eta: $("job-eta"),
  step: $("job-step"),
  attempt: $("job-attempt"),
  started: $("job-started"),
  finished: $("job-finished"),
  error: $("job-error"),
  errorText: $("job-error-text"),
  log: $("job-log"),
  logNote: $("job-log-note"),
  charts: $("job-charts"),
  chartsEmpty: $("job-charts-empty"),
  preview: $("job-preview"),
  previewImg: $("job-preview-img"),
  artifacts: $("job-artifacts"),
  artifactsEmpty: $("job-artifacts-empty"),
  text: $("job-text"),
  textRuns: $("job-text-runs"),
  cancel: $("job-cancel-form"),
  retry: $("job-retry-form"),
};

let lastSeq = 0;
let state = root?.dataset.state ?? "";
// The state the page was rendered in: a job seen ending live has its server-rendered parts
// (artifact links, result, images) fetched again.
const renderedState = state;
let lastProgress = null; // { step, total } of the latest progress or metrics event

// ---------- state, progress, ETA ----------

function setState(next) {
  if (!next) return;
  state = next;
  root.dataset.state = next;
  ui.state.className = `badge state-${next}`;
  ui.state.textContent = strings.states?.[next] ?? next;
  ui.progress.classList.remove(...[...ui.progress.classList].filter((c) => c.startsWith("state-")));
  ui.progress.classList.add(`state-${next}`);
  // The forms exist only if the server allowed the action when the page was rendered;
  // here we only hide what no longer applies to the current state.
  if (ui.cancel) ui.cancel.hidden = !(next === "queued" || next === "running");
  if (ui.retry) ui.retry.hidden = !(next === "failed" || next === "cancelled");
  if (TERMINAL_STATES.has(next) || next === "cancelling") ui.eta.textContent = "";
  // The server records a succeeded job as 100 % whatever its last progress event said (an
  // upscale reports step 0 of 1 and is done when the resize returns).
  if (next === "succeeded") showDone();
}

// "row 30 of 30", "step 3 of 3", or nothing for kinds whose bar's percent is all there is
// (#job-step's data-of, from the kind's progress_unit).
function stepText(step, total) {
  const template = ui.step.dataset.of ?? strings.stepOf;
  ui.step.textContent = template ? format(template, { step, total }) : "";
}

function showDone() {
  setProgress(ui.progress, 1, ui.progress.querySelector(".progress-label"));
  if (lastProgress && lastProgress.total != null) stepText(lastProgress.total, lastProgress.total);
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

function showProgress({ step, total, fraction, eta_seconds: eta }, withEta) {
  if (step != null && total != null) lastProgress = { step, total };
  if (state === "succeeded") {
    showDone();
    return;
  }
  let f = fraction;
  if (f == null && Number(total) > 0) f = Number(step) / Number(total);
  if (f != null) setProgress(ui.progress, f, ui.progress.querySelector(".progress-label"));
  if (step != null && total != null) stepText(step, total);
  // metrics events carry no ETA: keep the last one rather than blanking it.
  if (withEta && !TERMINAL_STATES.has(state)) {
    ui.eta.textContent = eta == null ? strings.etaUnknown ?? "" : format(strings.eta, { t: formatDuration(eta) });
  }
}

// Same shape as the server's `date:"Y-m-d H:i:s"`, in the zone it used (data-tz), so a live value
// matches what a reload would show.
function serverTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const opts = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  let parts;
  try {
    parts = new Intl.DateTimeFormat("en-US", { ...opts, timeZone: root.dataset.tz || undefined }).formatToParts(d);
  } catch {
    parts = new Intl.DateTimeFormat("en-US", opts).formatToParts(d); // Zone unknown to this browser: use local time.
  }
  const p = Object.fromEntries(parts.map(({ type, value }) => [type, value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

// Fill a Started/Finished cell once. The server's value, when there is one, wins: replayed events
// would otherwise overwrite it with their own (slightly different) time.
function setTimeOnce(el, iso) {
  if (!el || el.dataset.ts || !iso) return;
  const text = serverTime(iso);
  if (!text) return;
  el.dataset.ts = iso;
  el.textContent = text;
}

function showError(text) {
  ui.errorText.textContent = text;
  ui.error.hidden = false;
}

// ---------- log ----------

let pendingLog = [];
let logTruncated = false;

function queueLog(ts, level, message) {
  pendingLog.push({ ts, level: String(level || "info").toLowerCase(), message: String(message ?? "") });
  // A background tab gets no animation frames; keep the backlog bounded too.
  if (pendingLog.length > MAX_LOG_LINES) {
    pendingLog = pendingLog.slice(-MAX_LOG_LINES);
    logTruncated = true;
  }
  scheduleFlush();
}

function clockTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour12: false });
}

function flushLog() {
  if (!pendingLog.length) return;
  const log = ui.log;
  // Follow the tail only if the reader is already at the bottom: do not yank them while they scroll back.
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  const frag = document.createDocumentFragment();
  for (const line of pendingLog) {
    const row = document.createElement("span");
    row.className = `log-line log-${line.level}`;
    const ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = `${clockTime(line.ts)} `;
    const lvl = document.createElement("span");
    lvl.className = "lvl";
    lvl.textContent = `${line.level.toUpperCase().padEnd(7)} `;
    row.append(ts, lvl, document.createTextNode(`${line.message}\n`));
    frag.append(row);
  }
  pendingLog = [];
  log.append(frag);
  let excess = log.childElementCount - MAX_LOG_LINES;
  if (excess > 0) logTruncated = true;
  while (excess-- > 0) log.firstElementChild.remove();
  if (logTruncated) ui.logNote.textContent = strings.logTruncated ?? "";
  if (atBottom) log.scrollTop = log.scrollHeight;
}

// ---------- metric charts (uPlot, one per metric name, x = step) ----------

const charts = new Map(); // name -> { xs, ys, plot, dirty }

// Learning rates live around 1e-4: uPlot's default ticks would all read "0".
function formatNumber(v) {
  if (v == null || !Number.isFinite(v)) return "--";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return Number(v.toPrecision(3)).toExponential();
  return String(Number(v.toPrecision(4)));
}

function createChart(name) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.metric = name;
  const caption = document.createElement("figcaption");
  caption.textContent = name;
  const holder = document.createElement("div");
  figure.append(caption, holder);
  ui.charts.append(figure);
  ui.chartsEmpty.hidden = true;

  const entry = { xs: [], ys: [], plot: null, dirty: true };
  if (typeof window.uPlot !== "function") return entry; // Vendor script failed to load: keep data, skip drawing.

  const color = PALETTE[charts.size % PALETTE.length];
  entry.plot = new window.uPlot(
    {
      width: Math.max(holder.clientWidth, 200),
      height: CHART_HEIGHT,
      scales: { x: { time: false } },
      series: [
        { label: strings.step ?? "step" },
        { label: name, stroke: color, width: 1.5, fill: `${color}14`, points: { show: false }, value: (u, v) => formatNumber(v) },
      ],
      axes: [{}, { size: 64, values: (u, ticks) => ticks.map(formatNumber) }],
      legend: { live: true },
    },
    [entry.xs, entry.ys],
    holder,
  );
  // Charts follow their grid cell when the window (or the grid) changes width.
  new ResizeObserver(() => {
    const width = Math.max(holder.clientWidth, 200);
    if (entry.plot && width !== entry.plot.width) entry.plot.setSize({ width, height: CHART_HEIGHT });
  }).observe(holder);
  return entry;
}

// Metrics seen once (a fine-tune's eval loss before/after, train runtime) are figures, not curves:
// they are listed as values until a second point makes them a chart.
const singles = new Map(); // name -> { x, y, row }
let summary = null;

function showSingle(name, x, y) {
  if (!summary) {
    summary = document.createElement("dl");
    summary.className = "metric-summary";
    ui.charts.prepend(summary);
    ui.chartsEmpty.hidden = true;
  }
  let item = singles.get(name);
  if (!item) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    summary.append(dt, dd);
    item = { dt, dd };
    singles.set(name, item);
  }
  item.x = x;
  item.y = y;
  item.dd.textContent = formatNumber(y);
}

function addPoint(name, step, value) {
  const x = Number(step);
  const y = Number(value);
  if (!Number.isFinite(x) || !Number.isFinite(y)) return;
  let entry = charts.get(name);
  if (!entry) {
    const single = singles.get(name);
    if (!single || single.x === x) {
      showSingle(name, x, y);
      return;
    }
    single.dt.remove();
    single.dd.remove();
    singles.delete(name);
    // An empty list would stay behind as a blank first cell of the charts grid.
    if (!singles.size) {
      summary.remove();
      summary = null;
    }
    entry = createChart(name);
    charts.set(name, entry);
    entry.xs.push(single.x);
    entry.ys.push(single.y);
  }
  // A resumed attempt restarts from its last checkpoint and reports those steps again:
  // the newer values replace the old tail, and x stays sorted as uPlot requires.
  while (entry.xs.length && entry.xs[entry.xs.length - 1] >= x) {
    entry.xs.pop();
    entry.ys.pop();
  }
  entry.xs.push(x);
  entry.ys.push(y);
  entry.dirty = true;
  scheduleFlush();
}

function flushCharts() {
  for (const entry of charts.values()) {
    if (entry.dirty && entry.plot) entry.plot.setData([entry.xs, entry.ys]);
    entry.dirty = false;
  }
}

// Replay can deliver thousands of events in one burst: redraw at most once per frame.
let flushScheduled = false;
function scheduleFlush() {
  if (flushScheduled) return;
  flushScheduled = true;
  requestAnimationFrame(() => {
    flushScheduled = false;
    flushLog();
    flushCharts();
  });
}

// ---------- previews and artifacts ----------

// Only http(s) links from the server become href/src; anything else (javascript:, data:) is dropped.
function safeUrl(url) {
  if (!url) return null;
  try {
    const u = new URL(url, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

function humanSize(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[i]}`;
}

function showArtifact({ name, url, size }) {
  const key = String(name ?? "");
  // A retried attempt may report the same file again: update it in place.
  let li = [...ui.artifacts.children].find((el) => el.dataset.name === key);
  // The server's entry (its role and its download link) stands: replayed events add nothing.
  if (li?.dataset.server) return;
  if (!li) {
    li = document.createElement("li");
    li.dataset.name = key;
    ui.artifacts.append(li);
  }
  const href = safeUrl(url);
  const label = document.createElement(href ? "a" : "span");
  label.className = "name";
  label.textContent = key;
  if (href) {
    label.href = href;
    label.setAttribute("download", "");
  }
  const sz = document.createElement("span");
  sz.className = "size";
  sz.textContent = humanSize(size);
  li.replaceChildren(label, sz);
  ui.artifactsEmpty.hidden = true;
}

// A job seen ending on this page: its result, artifact links and images are the server's to
// render (links only to what this viewer may download), so fetch the page once and take them.
const SERVER_PARTS = ["job-made", "job-artifacts-card", "job-outputs"];
let refreshed = false;

async function refreshServerParts() {
  if (refreshed) return;
  refreshed = true;
  try {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of SERVER_PARTS) {
      const now = document.getElementById(id);
      const next = fresh.getElementById(id);
      if (now && next) now.replaceWith(document.importNode(next, true));
    }
    ui.artifacts = $("job-artifacts");
    ui.artifactsEmpty = $("job-artifacts-empty");
    markServerArtifacts();
  } catch {
    refreshed = false; // Offline for a moment: the next terminal event (a replay) tries again.
  }
}

function markServerArtifacts() {
  for (const li of ui.artifacts?.children ?? []) li.dataset.server = "1";
}

function showPreview({ url }) {
  const src = safeUrl(url);
  if (!src) return;
  ui.previewImg.src = src;
  ui.preview.hidden = false;
}

// ---------- generated text (playground jobs) ----------

const textRuns = new Map(); // index -> Text node inside that run's <pre>

// Deltas are appended as text nodes, never parsed as HTML: the model's output is untrusted.
function appendText({ index, delta }) {
  if (!ui.text || !delta) return;
  const i = Number(index) || 0;
  let node = textRuns.get(i);
  if (!node) {
    const figure = document.createElement("figure");
    figure.className = "job-text-run";
    figure.dataset.index = String(i);
    const caption = document.createElement("figcaption");
    caption.textContent = format(ui.text.dataset.runLabel ?? "{n}", { n: i + 1 });
    const pre = document.createElement("pre");
    node = document.createTextNode("");
    pre.append(node);
    figure.append(caption, pre);
    // Keep the runs in index order whatever order their first deltas arrive in.
    const next = [...ui.textRuns.children].find((el) => Number(el.dataset.index) > i);
    ui.textRuns.insertBefore(figure, next ?? null);
    textRuns.set(i, node);
    ui.text.hidden = false;
  }
  node.appendData(String(delta));
}

// ---------- messages ----------

function applyEvent(kind, data, ts) {
  switch (kind) {
    case "state":
      setState(data.state);
      if (TERMINAL_STATES.has(data.state) && !TERMINAL_STATES.has(renderedState)) refreshServerParts();
      if (data.attempt != null) ui.attempt.textContent = String(data.attempt);
      // started_at is kept across re-queues (first start wins), and a terminal state is final.
      if (data.state === "running") setTimeOnce(ui.started, ts);
      if (TERMINAL_STATES.has(data.state)) setTimeOnce(ui.finished, ts);
      if (data.error) showError(data.error);
      else if (!TERMINAL_STATES.has(data.state)) ui.error.hidden = true; // A retry clears the old error.
      break;
    case "progress":
      showProgress(data, true);
      break;
    case "metrics":
      showProgress(data, false);
      for (const [name, value] of Object.entries(data.values ?? {})) addPoint(name, data.step, value);
      break;
    case "log":
      // `traceback` reaches project admins only (the server strips it for other roles).
      queueLog(ts, data.level, data.traceback ? `${data.message}\n${data.traceback}` : data.message);
      break;
    case "preview":
      showPreview(data);
      break;
    case "artifact":
      showArtifact(data);
      break;
    case "text":
      appendText(data);
      break;
    default:
      break; // Newer servers may send kinds we do not know yet.
  }
}

function onMessage(msg) {
  if (msg.type === "snapshot" && msg.job) {
    setState(msg.job.state);
    if (msg.job.progress != null) setProgress(ui.progress, msg.job.progress, ui.progress.querySelector(".progress-label"));
    if (msg.job.attempt != null) ui.attempt.textContent = String(msg.job.attempt);
  } else if (msg.type === "event") {
    const seq = Number(msg.seq);
    // Replay and live delivery can overlap around a reconnect: apply each seq once.
    if (!Number.isFinite(seq) || seq <= lastSeq) return;
    lastSeq = seq;
    applyEvent(msg.kind, msg.data ?? {}, msg.ts);
  }
}

if (root && root.dataset.wsUrl) {
  markServerArtifacts();
  setState(state);
  connectLive({
    path: root.dataset.wsUrl,
    query: () => `after=${lastSeq}`,
    onMessage,
    onStatus: bindIndicator($("job-live"), strings),
    // A finished job's server closes the socket when it has sent everything: nothing more to wait for.
    shouldStop: (ev) => TERMINAL_STATES.has(state) && ev.code === 1000,
  });
}
