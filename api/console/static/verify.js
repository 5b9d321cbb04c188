// Vigil console: the auditor's checks, computed in the browser.
//
// Nothing here trusts the server: a checkpoint is a C2SP signed note
// (golang.org/x/mod/sumdb/note) checked with WebCrypto Ed25519 against the
// verifier key the auditor pasted; inclusion and consistency proofs are
// RFC 9162 (RFC 6962) Merkle proofs recomputed with WebCrypto SHA-256.
"use strict";

const enc = new TextEncoder();

function b64(s) {
  const bin = atob(s.trim());
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hex(u8) {
  return [...u8].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

async function sha256(u8) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", u8));
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// nodeHash is RFC 6962's interior node hash: SHA-256(0x01 || left || right).
function nodeHash(l, r) {
  return sha256(concat(new Uint8Array([1]), l, r));
}

class Failure extends Error {}

// parseVerifierKey reads "name+hash+base64(0x01 || ed25519 public key)".
async function parseVerifierKey(text) {
  const vk = text.trim();
  // The name ends at the first "+", the hash at the second; the base64
  // key may hold more.
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(vk);
  if (!m) throw new Failure("the verifier key is not of the form name+hash+key");
  const [, name, hashHex, keyB64] = m;
  let raw;
  try { raw = b64(keyB64); } catch (e) { throw new Failure("the verifier key's key is not base64"); }
  if (raw.length !== 33 || raw[0] !== 1) throw new Failure("the verifier key is not an Ed25519 key");
  const pub = raw.slice(1);
  const h = await sha256(concat(enc.encode(name + "\n"), raw));
  if (hex(h.slice(0, 4)) !== hashHex) throw new Failure("the verifier key's hash does not match its name and key");
  const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  return { name, keyHash: h.slice(0, 4), key };
}

// verifyNote checks that vk signed the note and returns its text.
async function verifyNote(note, vk) {
  const i = note.lastIndexOf("\n\n");
  if (i < 0) throw new Failure("not a signed note");
  const text = note.slice(0, i + 1);
  const sigs = note.slice(i + 2).split("\n").filter((l) => l !== "");
  let verified = false;
  for (const line of sigs) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Failure("malformed signature line in the note");
    if (m[1] !== vk.name) continue;
    const sig = b64(m[2]);
    if (sig.length !== 68 || !equal(sig.slice(0, 4), vk.keyHash)) continue;
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, vk.key, sig.slice(4), enc.encode(text)))) {
      throw new Failure("the Ed25519 signature by " + vk.name + " is not valid");
    }
    verified = true;
  }
  if (!verified) throw new Failure("the note carries no signature by your key " + vk.name);
  return text;
}

// openNote checks that vk signed the checkpoint note and returns its
// parsed body: origin, size, root.
async function openNote(note, vk) {
  const text = await verifyNote(note, vk);
  const lines = text.split("\n");
  if (lines.length < 4 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Failure("the checkpoint body is not origin, size, root");
  const root = b64(lines[2]);
  if (root.length !== 32) throw new Failure("the checkpoint root is not a SHA-256 hash");
  return { origin: lines[0], size: Number(lines[1]), root };
}

// rootFromInclusion recomputes the tree root from a leaf hash, its index,
// the tree size and the audit path (RFC 9162, 2.1.3.2).
async function rootFromInclusion(index, size, leaf, path) {
  if (index >= size) throw new Failure("the leaf index is outside the tree");
  let fn = index, sn = size - 1, r = leaf;
  for (const p of path) {
    if (sn === 0) throw new Failure("the proof is longer than the tree allows");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Failure("the proof is shorter than the tree needs");
  return r;
}

// checkConsistency verifies that the tree (size1, root1) is a prefix of
// (size2, root2) with the proof (RFC 9162, 2.1.4.2).
async function checkConsistency(size1, root1, size2, root2, proof) {
  if (size1 > size2) throw new Failure("the kept checkpoint is larger than today's: the log shrank");
  if (size1 === size2) {
    if (proof.length !== 0 || !equal(root1, root2)) throw new Failure("two checkpoints of the same size with different roots: a fork");
    return;
  }
  if (size1 === 0) return;
  let path = proof;
  if ((size1 & (size1 - 1)) === 0 && size1 < 2 ** 31) path = [root1, ...proof];
  if (path.length === 0) throw new Failure("empty consistency proof");
  let fn = size1 - 1, sn = size2 - 1;
  while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) throw new Failure("the consistency proof is too long");
    if (fn % 2 === 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Failure("the consistency proof is too short");
  if (!equal(fr, root1)) throw new Failure("the proof does not lead to the kept checkpoint's root");
  if (!equal(sr, root2)) throw new Failure("the proof does not lead to today's root");
}

function verdict(el, ok, text) {
  el.textContent = (ok ? "VERIFIED: " : "FAILED: ") + text;
  el.className = ok ? "ok" : "bad";
  el.dataset.verdict = ok ? "ok" : "bad";
}

// remember keeps the auditor's last verification in this browser, per log:
// the verdict is the browser's, so its record is too.
function remember(text) {
  const origin = (document.getElementById("cp-origin") || {}).textContent || "";
  if (!origin) return;
  localStorage.setItem("vigil-last-verify:" + origin, JSON.stringify({ at: new Date().toISOString(), text }));
  showLast();
}

function showLast() {
  const el = document.getElementById("last-verify");
  const origin = (document.getElementById("cp-origin") || {}).textContent || "";
  if (!el || !origin) return;
  const raw = localStorage.getItem("vigil-last-verify:" + origin);
  if (!raw) { el.textContent = "never in this browser"; return; }
  const last = JSON.parse(raw);
  el.textContent = last.at + " — " + last.text;
}

async function guard(el, f) {
  el.textContent = "checking…";
  el.className = "";
  delete el.dataset.verdict;
  try {
    const text = await f();
    verdict(el, true, text);
    remember(text);
  } catch (e) {
    verdict(el, false, e instanceof Failure ? e.message : "could not check: " + e.message);
  }
}

async function verifyReceipt() {
  const vk = await parseVerifierKey(document.getElementById("vkey").value);
  const area = document.getElementById("receipt");
  if (!area) throw new Failure("fetch a receipt first");
  let rc;
  try { rc = JSON.parse(area.value); } catch (e) { throw new Failure("the receipt is not JSON"); }
  const cp = await openNote(rc.checkpoint, vk);
  const inc = rc.inclusion;
  if (!inc || inc.size !== cp.size) throw new Failure("the proof is for a tree of another size than the signed checkpoint");
  if (inc.seq !== rc.seq) throw new Failure("the proof is for another leaf than the receipt's");
  const leaf = b64(rc.leaf_hash);
  if (inc.leaf_hash && !equal(b64(inc.leaf_hash), leaf)) throw new Failure("the proof is for another leaf hash");
  const root = await rootFromInclusion(inc.seq, inc.size, leaf, (inc.proof || []).map(b64));
  if (!equal(root, cp.root)) throw new Failure("the inclusion proof does not lead to the signed root");
  if (rc.tenant && !cp.origin.endsWith("/" + rc.tenant)) throw new Failure("the checkpoint is of another log (" + cp.origin + ")");
  return "event " + rc.event_id + " is entry " + inc.seq + " of " + cp.origin + ", whose checkpoint of " + cp.size + " entries is signed by " + vk.name;
}

async function verifyConsistency() {
  const vk = await parseVerifierKey(document.getElementById("vkey").value);
  const keptNote = document.getElementById("kept").value.replace(/\r\n/g, "\n");
  const kept = await openNote(keptNote, vk);
  const res = await fetch("/console/audit/consistency", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": document.getElementById("csrf").value },
    body: JSON.stringify({ kept: keptNote }),
  });
  if (!res.ok) throw new Failure("the server refused: " + res.status);
  const ans = await res.json();
  const today = await openNote(ans.checkpoint, vk);
  if (today.origin !== kept.origin) throw new Failure("today's checkpoint is of another log");
  const p = ans.proof;
  if (p.from !== kept.size || p.to !== today.size) throw new Failure("the proof is between other sizes");
  await checkConsistency(kept.size, kept.root, today.size, today.root, (p.proof || []).map(b64));
  return "today's log of " + today.size + " entries extends the one of " + kept.size + " you kept; both signed by " + vk.name;
}

// verifyErasure checks an erasure receipt's signature and that it states
// the erasure of the subject asked for.
async function verifyErasure() {
  const vk = await parseVerifierKey(document.getElementById("vkey").value);
  const text = await verifyNote(document.getElementById("receipt-note").value.replace(/\r\n/g, "\n"), vk);
  const lines = text.split("\n");
  if (lines[0] !== "vigil.erasure-receipt/v1") throw new Failure("not an erasure receipt");
  const field = (k) => (lines.find((l) => l.startsWith(k + " ")) || "").slice(k.length + 1);
  const want = document.getElementById("verify-erasure").dataset.subject;
  if (field("subject") !== want) throw new Failure("the receipt is for " + field("subject") + ", not " + want);
  const keys = lines.filter((l) => l.startsWith("key ")).length;
  return "signed by " + vk.name + ": " + field("subject") + " erased at " + field("erased-at") + ", " + keys + " data key(s) destroyed";
}

async function exportBundle() {
  const btn = document.getElementById("export");
  const bar = document.getElementById("export-progress");
  const status = document.getElementById("export-status");
  const expected = Math.max(1, Number(btn.dataset.size) + 2);
  btn.disabled = true;
  status.textContent = "exporting…";
  try {
    const res = await fetch("/console/audit/export", { method: "POST", headers: { "X-CSRF-Token": document.getElementById("csrf").value } });
    if (!res.ok) throw new Error("the server refused: " + res.status);
    const reader = res.body.getReader();
    const chunks = [];
    let bytes = 0, lines = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      bytes += value.length;
      for (const b of value) if (b === 10) lines++;
      bar.value = Math.min(99, Math.floor((100 * lines) / expected));
      status.textContent = lines + " lines, " + bytes + " bytes received";
    }
    const blob = new Blob(chunks, { type: "application/x-ndjson" });
    const digest = hex(await sha256(new Uint8Array(await blob.arrayBuffer())));
    bar.value = 100;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "vigil-export.jsonl";
    a.id = "bundle-link";
    a.textContent = "Save the bundle (" + bytes + " bytes, SHA-256 " + digest + ")";
    status.textContent = "done: ";
    status.appendChild(a);
    status.dataset.done = digest;
  } catch (e) {
    status.textContent = "FAILED: " + e.message;
  } finally {
    btn.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  showLast();
  const r = document.getElementById("verify-receipt");
  if (r) r.addEventListener("click", () => guard(document.getElementById("receipt-verdict"), verifyReceipt));
  const c = document.getElementById("verify-consistency");
  if (c) c.addEventListener("click", () => guard(document.getElementById("consistency-verdict"), verifyConsistency));
  const e = document.getElementById("verify-erasure");
  if (e) e.addEventListener("click", () => guard(document.getElementById("erasure-verdict"), verifyErasure));
  const x = document.getElementById("export");
  if (x) x.addEventListener("click", exportBundle);
});
