// Shared helpers for the live pages: a websocket that reconnects with backoff,
// the "live / reconnecting…" indicator, and the translated strings from the page.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
// Proxies close websockets that stay silent for a minute or so; a training run can be quiet longer.
const PING_EVERY_MS = 30000;

export const TERMINAL_STATES = new Set(["succeeded", "failed", "cancelled"]);

/** Strings rendered by templates/includes/js_strings.html, so the UI follows the user's language. */
/**
 * Django's CSRF token for a POST from script: the csrftoken cookie, or the hidden form input of
 * `scope` (a form, or the document) when the cookie is missing.
 */
export function csrfToken(scope = document) {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (m) return decodeURIComponent(m[1]);
  return (scope ?? document).querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

export function loadStrings() {
  const el = document.getElementById("atelier-strings");
  try {
    return el ? JSON.parse(el.textContent) : { states: {} };
  } catch {
    return { states: {} };
  }
}

/** A page part's own strings: the JSON in <script type="application/json" id="{id}"> ({} when
 * it is missing or broken, so a page never dies of its catalogue). */
export function pageStrings(id) {
  try {
    return JSON.parse(document.getElementById(id)?.textContent ?? "{}");
  } catch {
    return {};
  }
}

/** A job form's named inputs as typed job parameters: checkboxes as booleans, inputs marked
 * data-type integer/number as numbers (an empty one left out: "the default"), the rest as text. */
export function formParams(form) {
  const params = {};
  for (const el of form.querySelectorAll("[name]")) {
    if (el.name === "csrfmiddlewaretoken" || el.disabled) continue;
    if (el.type === "checkbox") {
      params[el.name] = el.checked;
    } else if (el.dataset.type === "integer" || el.dataset.type === "number") {
      if (el.value.trim() === "") continue;
      const n = Number(el.value);
      params[el.name] = Number.isFinite(n) ? n : el.value; // the server names a bad value
    } else {
      params[el.name] = el.value;
    }
  }
  return params;
}

/** "{t} left" + {t: "3 min"} -> "3 min left". */
export function format(template, values) {
  return String(template ?? "").replace(/\{(\w+)\}/g, (_, k) => (k in values ? values[k] : ""));
}

/** Status text beside the page title: connecting | live | reconnecting | closed | refused. */
export function bindIndicator(el, strings) {
  return (status) => {
    if (!el) return;
    el.dataset.status = status;
    el.textContent = strings[status] ?? status;
  };
}

/**
 * Open a websocket to `path` (same host, ws: or wss: to match the page) and keep it open.
 *
 * query():          called before every attempt, so a reconnect asks for what it has not seen yet.
 * onMessage(msg):   parsed JSON of each frame.
 * onStatus(s):      "connecting" | "live" | "reconnecting" | "closed" | "refused".
 * shouldStop(ev):   return true to stay closed after this close event.
 */
export function connectLive({ path, query = () => "", onMessage, onStatus = () => {}, shouldStop = () => false }) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let delay = FIRST_DELAY_MS;
  let everOpened = false;
  let timer = null;
  let pinger = null;
  let socket = null;
  let stopped = false;

  function open() {
    timer = null;
    const q = query();
    socket = new WebSocket(`${scheme}//${location.host}${path}${q ? `?${q}` : ""}`);

    socket.addEventListener("open", () => {
      everOpened = true;
      onStatus("live");
      const s = socket;
      pinger = setInterval(() => s.readyState === WebSocket.OPEN && s.send('{"type":"ping"}'), PING_EVERY_MS);
    });

    socket.addEventListener("message", (ev) => {
      // Reset the backoff only once the server actually talks to us: a server that accepts and
      // drops at once should not be hammered every 500 ms.
      delay = FIRST_DELAY_MS;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // Not ours to interpret; one bad frame must not kill the page.
      }
      // A frame is one message, or an array of them in order (a job's events flushed together).
      for (const one of Array.isArray(msg) ? msg : [msg]) {
        if (one && one.type !== "pong") onMessage(one);
      }
    });

    socket.addEventListener("close", (ev) => {
      socket = null;
      clearInterval(pinger);
      if (stopped) return;
      // 4000-4999 are application codes: the server refused us (not a member, logged out).
      // Retrying cannot fix that, so say so instead of looping.
      if (ev.code >= 4000 && ev.code <= 4999) {
        onStatus("refused");
        return;
      }
      if (shouldStop(ev)) {
        onStatus("closed");
        return;
      }
      onStatus(everOpened ? "reconnecting" : "connecting");
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    });
  }

  onStatus("connecting");
  open();

  // Leaving the page closes the socket itself; do not schedule a reconnect from its close event.
  window.addEventListener("pagehide", () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    if (socket) socket.close(1000);
  });
  // Coming back from the back/forward cache: the page is live again (query() resumes where it was).
  window.addEventListener("pageshow", (ev) => {
    if (ev.persisted && stopped) {
      stopped = false;
      open();
    }
  });
}

/** ISO timestamp -> "YYYY-MM-DD HH:MM" in the browser's time zone (matches the server's format). */
export function formatDateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso ?? "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** 0..1 (or anything) -> integer percent clamped to 0..100. */
export function toPercent(fraction) {
  const n = Number(fraction);
  if (!Number.isFinite(n)) return 0;
  return Math.max(0, Math.min(100, Math.round(n * 100)));
}

/** Update a .progress bar (fill width, aria-valuenow, optional text element). */
export function setProgress(bar, fraction, textEl) {
  if (!bar) return;
  const pct = toPercent(fraction);
  bar.setAttribute("aria-valuenow", String(pct));
  const fill = bar.querySelector(".progress-fill");
  if (fill) fill.style.width = `${pct}%`;
  if (textEl) textEl.textContent = `${pct}%`;
}

/**
 * Follow one job's websocket for a page that runs jobs in place (images, playground): replay
 * from run.lastSeq after every reconnect, apply each event seq exactly once, stop when the run is
 * no longer the page's current one or its job ended and the server closed normally.
 * run: { id, lastSeq, state } (lastSeq is advanced here; state is the page's to set).
 */
export function followJob(run, { isCurrent, onSnapshot, onEvent, onStatus = () => {} }) {
  connectLive({
    path: `/ws/jobs/${run.id}/`,
    query: () => `after=${run.lastSeq}`,
    onMessage: (msg) => {
      if (!isCurrent()) return; // a newer run owns the page now
      if (msg.type === "snapshot" && msg.job) {
        onSnapshot(msg.job);
      } else if (msg.type === "event") {
        const seq = Number(msg.seq);
        // Replay and live delivery overlap around a reconnect: apply each seq once.
        if (!Number.isFinite(seq) || seq <= run.lastSeq) return;
        run.lastSeq = seq;
        onEvent(msg.kind, msg.data ?? {});
      }
    },
    onStatus: (status) => {
      if (isCurrent()) onStatus(status);
    },
    shouldStop: (ev) => !isCurrent() || (TERMINAL_STATES.has(run.state) && ev.code === 1000),
  });
}

/** The field's own (translated) label for an error the form has no slot for; its name if none. */
function fieldLabel(form, name) {
  const label = form.querySelector(`[name="${CSS.escape(name)}"]`)?.labels?.[0]?.textContent.trim();
  return label || name;
}

/**
 * Error display for a form with a summary box and per-field slots ([data-error-for=name]):
 * clear(); general(title, lines); fields({name: message}, title) puts each message beside its
 * input (opening a closed <details> around it) and the rest, with the title, in the box, then
 * brings the first marked field (or the box) into view.
 */
export function formErrors(form, box) {
  function clear() {
    box.hidden = true;
    box.replaceChildren();
    for (const el of form.querySelectorAll("[data-error-for]")) {
      el.hidden = true;
      el.textContent = "";
    }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function general(title, lines = []) {
    const parts = [document.createTextNode(title)];
    if (lines.length) {
      const ul = document.createElement("ul");
      ul.className = "pg-error-list";
      for (const line of lines) {
        const li = document.createElement("li");
        li.textContent = line;
        ul.append(li);
      }
      parts.push(ul);
    }
    box.replaceChildren(...parts);
    box.hidden = false;
  }

  function fields(messages, title) {
    const unplaced = [];
    for (const [name, message] of Object.entries(messages ?? {})) {
      const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
      if (slot) {
        slot.textContent = String(message);
        slot.hidden = false;
        form.querySelector(`[name="${CSS.escape(name)}"]`)?.setAttribute("aria-invalid", "true");
        const section = slot.closest("details");
        if (section) section.open = true;
      } else {
        unplaced.push(name && name !== "__all__" ? `${fieldLabel(form, name)}: ${message}` : String(message));
      }
    }
    if (title || unplaced.length) general(title ?? "", unplaced);
    const first = form.querySelector("[aria-invalid=true]") ?? (box.hidden ? null : box);
    if (first) {
      first.scrollIntoView({ block: "center", behavior: "smooth" });
      if (first !== box) first.focus({ preventScroll: true });
    }
  }

  return { clear, general, fields };
}
