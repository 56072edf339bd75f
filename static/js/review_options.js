// The review inbox's buttons follow what is selected: while a selected item may not be approved
// (a dataset version without a PII scan) "Approve selected" is disabled, and the reason shown is
// the one the item shows and the server would answer (apps/datasets/decisions.py). The same for
// the `a` key on the current item. Items that may not be decided at all have no checkbox to tick.
const form = document.getElementById("rv-form");
const queue = document.getElementById("rv-queue");
const note = document.getElementById("rv-refusal");
const status = document.getElementById("rv-status");
const buttons = {
  approve: document.getElementById("rv-approve"),
  reject: document.getElementById("rv-reject"),
};
const attribute = { approve: "approveRefusal", reject: "rejectRefusal" };

const selected = () =>
  Array.from(queue.querySelectorAll("input[name=item]:checked"), (box) => box.closest(".rv-item")).filter(Boolean);

/** "<title>: <reason>" for each of `items` that may not be given `decision`. */
function refusals(items, decision) {
  return items
    .filter((li) => li.dataset[attribute[decision]])
    .map((li) => `${li.dataset.title}: ${li.dataset[attribute[decision]]}`);
}

function update() {
  const items = selected();
  const lines = [];
  for (const decision of ["approve", "reject"]) {
    const refused = refusals(items, decision);
    buttons[decision].disabled = refused.length > 0;
    lines.push(...refused);
  }
  note.textContent = lines.join(" · ");
  note.hidden = !lines.length;
}

if (form && queue && note) {
  queue.addEventListener("change", update); // a click, or review.js's `x`
  // The queue is redrawn when it changes (review.js keeps the ticks): read the new one.
  new MutationObserver(update).observe(queue, { childList: true });
  // Before review.js's key handler (the document's): `a` on an item that may not be approved says
  // why instead of asking the server.
  window.addEventListener(
    "keydown",
    (ev) => {
      if (ev.key !== "a" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.target instanceof HTMLElement && ev.target.closest("input, textarea, select")) return;
      const items = selected();
      const current = queue.querySelector(".rv-item.rv-current");
      const refused = refusals(items.length ? items : current ? [current] : [], "approve");
      if (!refused.length) return;
      ev.preventDefault();
      ev.stopImmediatePropagation();
      status.textContent = refused.join(" · ");
    },
    true,
  );
  update();
}
