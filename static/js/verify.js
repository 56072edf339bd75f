// The public verifier: hash the chosen file in the browser (SubtleCrypto) and open its result
// page, so the file itself never leaves the computer. Proof files (.json) still go to the
// server, which checks them as written. Without JavaScript, or without SubtleCrypto (plain HTTP
// beyond localhost), the form uploads the file and the server hashes it; nothing is kept.

const $ = (id) => document.getElementById(id);
const strings = (() => {
  try {
    return JSON.parse($("verify-strings")?.textContent ?? "{}");
  } catch {
    return {};
  }
})();

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const CREDENTIALS = "caBX"; // the C2PA manifest store in a PNG
const MAX_IN_BROWSER = 1024 * 1024 * 1024;

/**
 * The PNG without its C2PA chunks, as workers/imaging/credentials.py strip_credentials does:
 * the chain records the SHA-256 of the file before credentials were added. Returns
 * { bytes, stripped } (the input unchanged when it is not a PNG or carries none).
 */
function withoutCredentials(bytes) {
  if (bytes.length < 8 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) return { bytes, stripped: false };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kept = [bytes.subarray(0, 8)];
  let offset = 8;
  let found = false;
  while (offset + 12 <= bytes.length) {
    const size = view.getUint32(offset) + 12;
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    if (type === CREDENTIALS) found = true;
    else kept.push(bytes.subarray(offset, offset + size));
    offset += size;
    if (type === "IEND") break;
  }
  if (!found) return { bytes, stripped: false };
  const total = kept.reduce((n, part) => n + part.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of kept) {
    out.set(part, at);
    at += part.length;
  }
  return { bytes: out, stripped: true };
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const form = $("pv-form");
const input = $("pv-file");
const status = $("pv-status");

form?.addEventListener("submit", async (ev) => {
  const file = input?.files?.[0];
  if (!file || !window.crypto?.subtle || file.size > MAX_IN_BROWSER) return;
  if (file.name.toLowerCase().endsWith(".json")) return; // a proof: the server checks it
  ev.preventDefault();
  status.hidden = false;
  status.textContent = strings.hashing ?? "…";
  try {
    const { bytes, stripped } = withoutCredentials(new Uint8Array(await file.arrayBuffer()));
    const hex = await sha256Hex(bytes);
    window.location.assign(`${form.dataset.verifyUrl}${hex}/${stripped ? "?c2pa=1" : ""}`);
  } catch {
    status.textContent = strings.failed ?? "";
  }
});
