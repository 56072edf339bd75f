// Drag and drop, or paste, an image onto the generation form's init or control image field instead
// of typing an output number: the file goes to the gallery's upload (galleries:upload, the same
// checks as every image upload: PNG, JPEG or WebP, 30 MB, 4096 x 4096 px) and the new output's
// number fills the field, as if it had been typed. A paste goes to the field that has focus, else
// to the init image.

import { csrfToken, format, pageStrings } from "./live.js";

const $ = (id) => document.getElementById(id);
const form = $("im-form");
const root = $("im-inpaint");
const strings = pageStrings("inpaint-strings");

const FIELDS = ["init_output_id", "control_output_id"];

function imageFile(list) {
  for (const item of list ?? []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file && /^image\//.test(file.type)) return file;
  }
  return null;
}

function statusFor(input) {
  const field = input.closest(".field");
  let el = field.querySelector(".im-drop-status");
  if (!el) {
    el = document.createElement("p");
    el.className = "help im-drop-status";
    el.setAttribute("role", "status");
    field.append(el);
  }
  return el;
}

function errorFor(input) {
  return input.closest(".field")?.querySelector(`[data-error-for="${input.name}"]`);
}

function say(input, message, isError = false) {
  const status = statusFor(input);
  const error = errorFor(input);
  status.textContent = isError ? "" : message;
  if (error) {
    error.textContent = isError ? message : "";
    error.hidden = !isError;
  }
}

async function upload(input, file) {
  if (!file) {
    say(input, strings.notImage ?? "", true);
    return;
  }
  say(input, strings.uploading ?? "");
  const body = new FormData();
  body.append("file", file, file.name || "pasted.png");
  let data = null;
  let res = null;
  try {
    res = await fetch(root.dataset.uploadUrl, {
      method: "POST",
      body,
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
      credentials: "same-origin",
    });
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res?.ok || data?.id == null) {
    say(input, `${strings.uploadFailed ?? ""} ${data?.error ?? res?.status ?? ""}`.trim(), true);
    return;
  }
  input.value = String(data.id);
  // As if typed: the mask canvas loads it, choosing a control image turns ControlNet on.
  input.dispatchEvent(new Event("input", { bubbles: true }));
  input.dispatchEvent(new Event("change", { bubbles: true }));
  say(input, format(strings.uploaded ?? "#{id}", { id: data.id }));
  input.closest("details")?.setAttribute("open", "");
}

function makeDropTarget(input) {
  const field = input.closest(".field");
  if (!field) return;
  field.title = strings.dropHere ?? "";
  field.addEventListener("dragover", (ev) => {
    if (![...(ev.dataTransfer?.types ?? [])].includes("Files")) return;
    ev.preventDefault(); // allows the drop
    field.classList.add("im-drop-over");
    field.style.outline = "2px dashed currentColor";
  });
  field.addEventListener("dragleave", () => {
    field.classList.remove("im-drop-over");
    field.style.outline = "";
  });
  field.addEventListener("drop", (ev) => {
    ev.preventDefault();
    field.classList.remove("im-drop-over");
    field.style.outline = "";
    upload(input, imageFile(ev.dataTransfer?.files));
  });
}

function onPaste(ev) {
  const file = imageFile(ev.clipboardData?.items);
  if (!file) return; // text: the ordinary paste
  const focused = document.activeElement;
  const target = FIELDS.map((n) => form.elements.namedItem(n)).find((el) => el && el === focused) ?? form.elements.namedItem("init_output_id");
  if (!target || target.disabled) return;
  ev.preventDefault();
  upload(target, file);
}

if (form && root && form.dataset.canLaunch === "true") {
  for (const name of FIELDS) {
    const input = form.elements.namedItem(name);
    if (input) makeDropTarget(input);
  }
  document.addEventListener("paste", onPaste);
}
