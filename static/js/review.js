// The review inbox: keyboard decisions (j/k move, x select, a approve, r reason + Enter reject),
// decisions posted without leaving the page, and the queue refreshed live when the review
// socket says it changed (a new flag, another reviewer's decision).
import { bindIndicator, connectLive, csrfToken, loadStrings } from "./live.js";

const form = document.getElementById("rv-form");
const queue = document.getElementById("rv-queue");
const reason = document.getElementById("rv-reason");
const status = document.getElementById("rv-status");
const strings = loadStrings();
let current = 0;
// Decisions run one after the other, each on the items chosen when its key was pressed: a key
// pressed while the previous decision is still on its way is queued, not dropped.
let pending = Promise.resolve();

const items = () => Array.from(queue.querySelectorAll(".rv-item"));

function focusItem(index) {
  const list = items();
  if (!list.length) return;
  current = Math.max(0, Math.min(list.length - 1, index));
  list.forEach((li, i) => li.classList.toggle("rv-current", i === current));
  list.forEach((li, i) => (i === current ? li.setAttribute("aria-current", "true") : li.removeAttribute("aria-current")));
  list[current].focus({ preventScroll: true });
  list[current].scrollIntoView({ block: "nearest" });
}

/** The items a key acts on: the selected ones, or else the current one. */
function targets() {
  const checked = Array.from(queue.querySelectorAll("input[name=item]:checked")).map((c) => c.value);
  if (checked.length) return checked;
  const li = items()[current];
  return li && li.dataset.own !== "1" ? [li.dataset.item] : [];
}

let refreshes = 0;

async function refresh() {
  const mine = ++refreshes;
  const response = await fetch(form.dataset.partial, { headers: { Accept: "text/html" } });
  // Two refreshes in flight (a decision and the socket): only the newest one is drawn.
  if (!response.ok || mine !== refreshes) return;
  const html = await response.text();
  if (mine !== refreshes) return;
  const key = items()[current]?.dataset.key;
  const keep = new Set(Array.from(queue.querySelectorAll("input[name=item]:checked")).map((c) => c.value));
  queue.innerHTML = html;
  queue.querySelectorAll("input[name=item]").forEach((c) => (c.checked = keep.has(c.value)));
  const list = items();
  const again = list.findIndex((li) => li.dataset.key === key);
  focusItem(again >= 0 ? again : Math.min(current, list.length - 1));
  const count = document.getElementById("rv-count")?.dataset.count;
  document.querySelectorAll("[data-review-count]").forEach((el) => {
    el.textContent = count ?? "";
    el.hidden = !Number(count);
  });
}

function decide(decision, chosen) {
  if (!chosen.length) return;
  if (decision === "reject" && !reason.value.trim()) {
    status.textContent = strings.review_reason_needed ?? "Write a reason to reject.";
    reason.focus();
    return;
  }
  const text = reason.value;
  if (decision === "reject") {
    reason.value = "";
    reason.blur();
  }
  pending = pending.then(() => send(decision, chosen, text));
}

async function send(decision, chosen, text) {
  const body = new FormData();
  chosen.forEach((v) => body.append("item", v));
  body.append("decision", decision);
  body.append("reason", text);
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body,
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
    });
    const data = await response.json();
    const failed = (data.results ?? []).filter((r) => !r.ok);
    status.textContent = data.error ?? failed.map((r) => `${r.key}: ${r.message}`).join(" · ");
    if (failed.length && decision === "reject" && !reason.value) reason.value = text;
  } catch {
    status.textContent = strings.review_failed ?? "Could not send the decision; try again.";
  }
  await refresh();
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const decision = ev.submitter?.value;
  const chosen = Array.from(queue.querySelectorAll("input[name=item]:checked")).map((c) => c.value);
  decide(decision, chosen);
});

reason.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") {
    ev.preventDefault();
    decide("reject", targets());
  } else if (ev.key === "Escape") {
    reason.blur();
    focusItem(current);
  }
});

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.target instanceof HTMLElement && ev.target.closest("input, textarea, select")) return;
  if (ev.key === "j") focusItem(current + 1);
  else if (ev.key === "k") focusItem(current - 1);
  else if (ev.key === "x") {
    const box = items()[current]?.querySelector("input[name=item]:not(:disabled)");
    if (box) {
      box.checked = !box.checked;
      box.dispatchEvent(new Event("change", { bubbles: true })); // as a click would
    }
  } else if (ev.key === "a") decide("approve", targets());
  else if (ev.key === "r") {
    ev.preventDefault();
    reason.focus();
  } else return;
  ev.preventDefault();
});

queue.addEventListener("click", (ev) => {
  const li = ev.target instanceof Element ? ev.target.closest(".rv-item") : null;
  if (li) focusItem(items().indexOf(li));
});

focusItem(0);
connectLive({
  path: form.dataset.socket,
  onMessage: (msg) => msg.type === "changed" && refresh(),
  onStatus: bindIndicator(document.getElementById("rv-live"), strings),
});

