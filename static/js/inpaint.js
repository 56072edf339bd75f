// Inpainting mask painting: a canvas over the init image (brush, erase, clear). On Generate the
// painted mask is uploaded as a black-and-white PNG (white = redraw) and its id goes in the form's
// hidden `mask_id`, which images.js sends with the other job parameters. The upload happens in a
// capture-phase submit listener, before images.js's own: a submit with an unsent mask is held,
// the mask uploaded, then the form submitted again with its id.

import { csrfToken, format, pageStrings } from "./live.js";

const $ = (id) => document.getElementById(id);
const form = $("im-form");
const root = $("im-inpaint");
const strings = pageStrings("inpaint-strings");

const MAX_SIDE = 2048; // the canvas never holds more; the server stretches the mask onto the image
const PAINT = "rgb(255, 48, 48)"; // shown at half opacity over the image; exported as white

const ui = {
  init: form?.elements.namedItem("init_output_id"),
  width: form?.elements.namedItem("width"),
  height: form?.elements.namedItem("height"),
  maskId: $("im-mask_id"),
  none: $("im-mask-none"),
  stage: $("im-mask-stage"),
  image: $("im-mask-image"),
  canvas: $("im-mask-canvas"),
  tools: $("im-mask-tools"),
  brush: $("im-mask-brush"),
  erase: $("im-mask-erase"),
  clear: $("im-mask-clear"),
  useSize: $("im-mask-size"),
  sizeNote: $("im-mask-size-note"),
  error: $("im-mask_id-error"),
};

const state = { painted: false, sent: false, erasing: false, drawing: false, last: null, loadedId: "" };

function showError(message) {
  if (!ui.error) return;
  ui.error.textContent = message ?? "";
  ui.error.hidden = !message;
}

// ---------- layout (inline styles from script are allowed by the CSP; style attributes are not)

function layout() {
  // The stage is exactly the image's box, never wider: the canvas covers the stage, so a stage
  // stretched by its flex column (.field) would map the brush onto the wrong image pixels.
  Object.assign(ui.stage.style, { position: "relative", display: "inline-block", lineHeight: "0", maxWidth: "100%", alignSelf: "flex-start" });
  const small = Math.max(ui.image.naturalWidth, ui.image.naturalHeight) <= 128;
  const shown = small ? 256 : Math.min(384, Math.max(ui.image.naturalWidth, ui.image.naturalHeight));
  const ratio = ui.image.naturalWidth / ui.image.naturalHeight;
  const w = ratio >= 1 ? shown : Math.round(shown * ratio);
  Object.assign(ui.image.style, { width: `${w}px`, maxWidth: "100%", height: "auto", imageRendering: small ? "pixelated" : "auto", display: "block" });
  Object.assign(ui.canvas.style, {
    position: "absolute",
    inset: "0",
    width: "100%",
    height: "100%",
    opacity: "0.55",
    cursor: "crosshair",
    touchAction: "none",
    imageRendering: small ? "pixelated" : "auto",
  });
}

// ---------- the init image

function imageUrl(id) {
  return `${root.dataset.galleryUrl}${encodeURIComponent(id)}/image.png`;
}

function forgetMask() {
  state.painted = false;
  state.sent = false;
  ui.maskId.value = "";
  const ctx = ui.canvas.getContext("2d");
  ctx.clearRect(0, 0, ui.canvas.width, ui.canvas.height);
}

function hideStage() {
  state.loadedId = "";
  ui.stage.hidden = true;
  ui.tools.hidden = true;
  ui.none.hidden = false;
  forgetMask();
}

function loadInit() {
  const id = String(ui.init?.value ?? "").trim();
  if (id === state.loadedId) return;
  showError("");
  if (!/^\d+$/.test(id)) {
    hideStage();
    return;
  }
  state.loadedId = id;
  ui.image.onload = () => {
    const scale = Math.min(1, MAX_SIDE / Math.max(ui.image.naturalWidth, ui.image.naturalHeight));
    ui.canvas.width = Math.max(1, Math.round(ui.image.naturalWidth * scale));
    ui.canvas.height = Math.max(1, Math.round(ui.image.naturalHeight * scale));
    forgetMask();
    layout();
    ui.stage.hidden = false;
    ui.tools.hidden = false;
    ui.none.hidden = true;
    noteSize();
  };
  ui.image.onerror = () => {
    hideStage();
    showError(format(strings.noImage ?? "#{id}", { id }));
  };
  ui.image.src = imageUrl(id);
}

/** The result is made at the form's width and height: say so when the image has another size. */
function noteSize() {
  const w = ui.image.naturalWidth;
  const h = ui.image.naturalHeight;
  const same = Number(ui.width?.value) === w && Number(ui.height?.value) === h;
  ui.sizeNote.textContent = same ? "" : format(strings.sizeNote ?? "{w}x{h}", { w, h });
  ui.useSize.hidden = same;
}

function useImageSize() {
  const fit = (v) => Math.min(2048, Math.max(16, Math.round(v / 8) * 8));
  for (const [el, v] of [
    [ui.width, ui.image.naturalWidth],
    [ui.height, ui.image.naturalHeight],
  ]) {
    if (!el) continue;
    el.value = String(fit(v));
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }
  noteSize();
}

// ---------- painting

function point(ev) {
  const rect = ui.canvas.getBoundingClientRect();
  return {
    x: ((ev.clientX - rect.left) * ui.canvas.width) / rect.width,
    y: ((ev.clientY - rect.top) * ui.canvas.height) / rect.height,
  };
}

function stroke(from, to) {
  const ctx = ui.canvas.getContext("2d");
  const rect = ui.canvas.getBoundingClientRect();
  ctx.globalCompositeOperation = state.erasing ? "destination-out" : "source-over";
  ctx.strokeStyle = PAINT;
  ctx.fillStyle = PAINT;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  // The brush size is in screen pixels, whatever the image's own size.
  ctx.lineWidth = Math.max(1, (Number(ui.brush.value) * ui.canvas.width) / Math.max(rect.width, 1));
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x + 0.01, to.y);
  ctx.stroke();
}

function isEmpty() {
  const { data } = ui.canvas.getContext("2d").getImageData(0, 0, ui.canvas.width, ui.canvas.height);
  for (let i = 3; i < data.length; i += 4) if (data[i]) return false;
  return true;
}

function onDown(ev) {
  if (ev.button !== 0 || form.dataset.canLaunch !== "true") return;
  ev.preventDefault();
  ui.canvas.setPointerCapture?.(ev.pointerId);
  state.drawing = true;
  state.last = point(ev);
  stroke(state.last, state.last);
}

function onMove(ev) {
  if (!state.drawing) return;
  const p = point(ev);
  stroke(state.last, p);
  state.last = p;
}

function onUp() {
  if (!state.drawing) return;
  state.drawing = false;
  state.painted = !isEmpty();
  state.sent = false;
  ui.maskId.value = ""; // changed: the next Generate uploads it again
  showError("");
}

// ---------- the upload

/** The mask as a PNG: white where painted, black elsewhere (the painted alpha becomes gray edges). */
function maskBlob() {
  const out = document.createElement("canvas");
  out.width = ui.canvas.width;
  out.height = ui.canvas.height;
  const ctx = out.getContext("2d");
  ctx.drawImage(ui.canvas, 0, 0);
  ctx.globalCompositeOperation = "source-in";
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.globalCompositeOperation = "destination-over";
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, out.width, out.height);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

async function uploadMask() {
  const body = new FormData();
  body.append("file", await maskBlob(), "mask.png");
  const res = await fetch(root.dataset.maskUrl, {
    method: "POST",
    body,
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok || !data?.id) throw new Error(data?.error ?? String(res.status));
  return data.id;
}

let uploading = false;

async function beforeSubmit(ev) {
  if (!state.painted || state.sent || ui.stage.hidden) return; // nothing new to send
  ev.preventDefault();
  ev.stopImmediatePropagation();
  if (uploading) return;
  uploading = true;
  try {
    ui.maskId.value = String(await uploadMask());
    state.sent = true;
    showError("");
  } catch (err) {
    showError(`${strings.maskFailed ?? ""} ${err.message}`.trim());
    return;
  } finally {
    uploading = false;
  }
  form.requestSubmit();
}

if (form && root && ui.init && ui.canvas) {
  ui.canvas.addEventListener("pointerdown", onDown);
  ui.canvas.addEventListener("pointermove", onMove);
  ui.canvas.addEventListener("pointerup", onUp);
  ui.canvas.addEventListener("pointercancel", onUp);
  ui.erase.addEventListener("click", () => {
    state.erasing = !state.erasing;
    ui.erase.setAttribute("aria-pressed", String(state.erasing));
    ui.erase.classList.toggle("active", state.erasing);
  });
  ui.clear.addEventListener("click", forgetMask);
  ui.useSize.addEventListener("click", useImageSize);
  for (const el of [ui.width, ui.height]) el?.addEventListener("input", () => !ui.stage.hidden && noteSize());
  ui.init.addEventListener("change", loadInit);
  ui.init.addEventListener("input", loadInit);
  ui.init.addEventListener("focus", loadInit); // images.js's "img2img" buttons set it, then focus it
  // A value set without an event (a reused form): look again when the section opens.
  ui.init.closest("details")?.addEventListener("toggle", loadInit);
  form.addEventListener("submit", beforeSubmit, { capture: true });
  loadInit();
}
