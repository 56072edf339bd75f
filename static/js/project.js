// Project dashboard: keeps the jobs table current from /ws/projects/<id>/.
// The server pushes a whole job summary per change, and re-sends the recent jobs (oldest first) on
// every connect, so a reconnect catches up by itself and applying a message twice is harmless.

import { bindIndicator, connectLive, formatDateTime, loadStrings, setProgress } from "./live.js";

const table = document.getElementById("jobs-table");
const body = document.getElementById("jobs-body");
const rowTemplate = document.getElementById("job-row-template");
const strings = loadStrings();
const setStatus = bindIndicator(document.getElementById("project-live"), strings);

function queueFor(kind) {
  const opt = document.querySelector(`#kind-queues option[value="${CSS.escape(kind ?? "")}"]`);
  return opt ? opt.dataset.queue : "";
}

function rowFor(id) {
  return body.querySelector(`tr[data-job-id="${CSS.escape(String(id))}"]`);
}

function fillRow(row, job) {
  const q = (role) => row.querySelector(`[data-role="${role}"]`);

  const badge = q("state");
  if (job.state) {
    badge.className = `badge state-${job.state}`;
    // The page's own (translated) names first: the websocket's labels are in the server's language.
    badge.textContent = strings.states?.[job.state] || job.state_label || job.state;
  }

  const bar = q("progress");
  if (job.state) bar.className = `progress state-${job.state}`;
  if (job.progress != null) setProgress(bar, job.progress, q("progress-text"));

  if (job.url) {
    q("link").href = job.url;
    q("kind").href = job.url;
  }
  if (job.kind) q("kind").textContent = strings.kinds?.[job.kind] || job.kind_label || job.kind;
  if (job.kind) q("kind").title = job.kind;
  if (job.created_by != null) q("created-by").textContent = job.created_by;
  if (job.created_at) {
    const t = q("created");
    t.dateTime = job.created_at;
    t.textContent = formatDateTime(job.created_at);
  }
}

function insertRow(job) {
  const row = rowTemplate.content.firstElementChild.cloneNode(true);
  row.dataset.jobId = String(job.id);
  row.querySelector('[data-role="id"]').textContent = String(job.id);
  row.querySelector('[data-role="queue"]').textContent = queueFor(job.kind);
  fillRow(row, job);
  row.classList.add("is-new");
  body.prepend(row);
  document.getElementById("jobs-empty")?.setAttribute("hidden", "");
}

function onMessage(msg) {
  if (msg.type !== "job" || !msg.job || msg.job.id == null) return;
  const row = rowFor(msg.job.id);
  if (row) fillRow(row, msg.job);
  else insertRow(msg.job);
}

if (table && body && rowTemplate) {
  connectLive({
    path: table.dataset.wsUrl,
    onMessage,
    onStatus: setStatus,
  });
}

// After a failed launch, bring the form with errors into view and put the cursor on the first bad field.
const failed = document.querySelector(".launch-card.has-errors");
if (failed) {
  failed.scrollIntoView({ block: "center" });
  (failed.querySelector('[aria-invalid="true"]') ?? failed.querySelector("input:not([type=hidden]), select"))?.focus({ preventScroll: true });
}
