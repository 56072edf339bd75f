// Dataset import page: follows the import job over its websocket (progress bar, state badge) and
// reloads once the job has ended, so the server shows the outcome: the new version (a redirect),
// the refused file's errors with the mapping form, or the cancelled import.

import { TERMINAL_STATES, bindIndicator, followJob, loadStrings, setProgress } from "./live.js";

const root = document.getElementById("import-root");
const strings = loadStrings();

if (root && !TERMINAL_STATES.has(root.dataset.state)) {
  const bar = document.getElementById("import-progress");
  const badge = document.getElementById("import-state");
  const cancel = document.getElementById("import-cancel-form");
  const lede = document.getElementById("import-lede");
  const indicate = bindIndicator(document.getElementById("import-live"), strings);
  const run = { id: Number(root.dataset.jobId), lastSeq: Number(root.dataset.lastSeq) || 0, state: root.dataset.state };
  let reloading = false;

  const setState = (state) => {
    if (!state || state === run.state) return;
    run.state = state;
    badge.className = `badge state-${state}`;
    badge.textContent = strings.states?.[state] ?? state;
    if (cancel) cancel.hidden = !(state === "queued" || state === "running");
    const said = lede?.dataset[state];
    if (said) lede.textContent = said;
    if (TERMINAL_STATES.has(state) && !reloading) {
      reloading = true;
      location.reload();
    }
  };

  followJob(run, {
    isCurrent: () => !reloading,
    onSnapshot: (job) => {
      if (job.progress != null) setProgress(bar, job.progress, bar?.querySelector(".progress-label"));
      setState(job.state);
    },
    onEvent: (kind, data) => {
      if (kind === "progress" && Number(data.total) > 0) {
        setProgress(bar, Number(data.step) / Number(data.total), bar?.querySelector(".progress-label"));
      } else if (kind === "state") {
        setState(data.state);
      }
    },
    onStatus: indicate,
  });
}
