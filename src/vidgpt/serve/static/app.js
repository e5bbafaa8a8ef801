// vidgpt chat page: one chat session, each turn text or a clip; jobs stream progress as server-sent events.
"use strict";
const $ = (id) => document.getElementById(id);
const chat = $("chat");
let sessionId = null;
let limits = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function addTurn(cls, text) {
  const t = el("div", "turn " + cls, text);
  chat.appendChild(t);
  chat.scrollTop = chat.scrollHeight;
  return t;
}
function showError(msg, where) {
  const t = where || addTurn("error");
  t.className = "turn error";
  t.textContent = msg;
  t.dataset.testid = "error";
  t.setAttribute("data-testid", "error");
  chat.scrollTop = chat.scrollHeight;
}

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  let r;
  try { r = await fetch(url, opts); } catch (e) { throw new Error("the server cannot be reached (" + e.message + ")"); }
  const data = r.status === 204 ? null : await r.json().catch(() => ({ error: "HTTP " + r.status }));
  if (!r.ok) throw new Error((data && data.error) || "HTTP " + r.status);
  return data;
}

function settings() {
  const s = {
    frames: +$("frames").value, width: +$("width").value, height: +$("height").value,
    cfg: +$("cfg").value, temperature: +$("temperature").value,
  };
  const seed = $("seed").value.trim();
  s.seed = seed === "" ? null : +seed;
  return s;
}

function fillSelect(sel, values, preferred) {
  sel.innerHTML = "";
  for (const v of values) { const o = el("option", null, String(v)); o.value = v; sel.appendChild(o); }
  sel.value = values.includes(preferred) ? preferred : values[values.length - 1];
}

// --- clips -----------------------------------------------------------------------------------
function videoOf(clip) {
  const v = document.createElement("video");
  v.src = clip.urls.mp4;
  v.autoplay = true; v.loop = true; v.muted = true; v.playsInline = true; v.controls = true;
  v.width = 256;
  return v;
}

function clipCard(clip, turn) {
  turn.innerHTML = "";
  turn.classList.add("clip");
  turn.dataset.clipId = clip.id;
  turn.setAttribute("data-testid", "clip");
  const stage = el("div", "stage");
  const video = videoOf(clip);
  video.setAttribute("data-testid", "clip-video");
  const canvas = document.createElement("canvas");
  stage.append(video, canvas);
  turn.appendChild(stage);
  turn.appendChild(el("div", "meta", `${clip.label ? clip.label + " · " : ""}${clip.frames} frames · ${clip.width}×${clip.height}`));
  const actions = el("div", "actions");
  const dl = el("a", null, "Download");
  dl.href = clip.urls.mp4 + "?download=1"; dl.download = clip.id + ".mp4"; dl.setAttribute("data-testid", "download");
  const gif = el("a", null, "GIF"); gif.href = clip.urls.gif; gif.target = "_blank";
  const sheet = el("a", null, "Sheet"); sheet.href = clip.urls.sheet; sheet.target = "_blank";
  const input = el("input"); input.placeholder = "make it blue"; input.setAttribute("data-testid", "edit-text");
  const apply = el("button", null, "Edit"); apply.type = "button"; apply.setAttribute("data-testid", "edit-apply");
  apply.onclick = () => { const t = input.value.trim(); if (!t) { input.focus(); return; } edit(clip, "instruct", { instruction: t }); input.value = ""; };
  input.onkeydown = (e) => { if (e.key === "Enter") apply.click(); };
  actions.append(dl, gif, sheet, input, apply);
  for (const [task, label] of [["continue", "Continue"], ["outpaint", "Outpaint"], ["interpolate", "Interpolate"]]) {
    const b = el("button", null, label); b.type = "button"; b.setAttribute("data-testid", "edit-" + task);
    b.onclick = () => edit(clip, task, {});
    actions.appendChild(b);
  }
  const inpaint = el("button", null, "Inpaint region"); inpaint.type = "button"; inpaint.setAttribute("data-testid", "edit-inpaint");
  actions.appendChild(inpaint);
  setupMask(clip, stage, canvas, inpaint);
  turn.appendChild(actions);
  chat.scrollTop = chat.scrollHeight;
}

// Draw a box over the clip, then send it as the inpaint mask (in the clip's pixels).
function setupMask(clip, stage, canvas, button) {
  let box = null, start = null;
  const ctx = canvas.getContext("2d");
  const toClip = (e) => {
    const r = canvas.getBoundingClientRect();
    return [Math.round((e.clientX - r.left) / r.width * clip.width), Math.round((e.clientY - r.top) / r.height * clip.height)];
  };
  const draw = () => {
    canvas.width = clip.width; canvas.height = clip.height;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!box) return;
    ctx.fillStyle = "rgba(255, 60, 60, 0.35)"; ctx.strokeStyle = "#ff3c3c"; ctx.lineWidth = Math.max(1, clip.width / 128);
    ctx.fillRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  };
  canvas.onpointerdown = (e) => { start = toClip(e); canvas.setPointerCapture(e.pointerId); };
  canvas.onpointermove = (e) => {
    if (!start) return;
    const p = toClip(e);
    const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
    box = [clamp(Math.min(start[0], p[0]), clip.width), clamp(Math.min(start[1], p[1]), clip.height),
           clamp(Math.max(start[0], p[0]), clip.width), clamp(Math.max(start[1], p[1]), clip.height)];
    draw();
  };
  canvas.onpointerup = () => {
    start = null;
    if (box && (box[2] - box[0] < 1 || box[3] - box[1] < 1)) box = null;
    button.textContent = box ? "Inpaint selection" : "Draw a box on the clip";
    draw();
  };
  button.onclick = () => {
    if (!stage.classList.contains("drawing")) {
      stage.classList.add("drawing");
      button.textContent = "Draw a box on the clip";
      return;
    }
    if (!box) return;
    const mask = box.slice();
    stage.classList.remove("drawing"); box = null; draw(); button.textContent = "Inpaint region";
    edit(clip, "inpaint", { mask });
  };
}

// --- jobs ------------------------------------------------------------------------------------
function pendingTurn(label) {
  const t = addTurn("assistant pending");
  t.setAttribute("data-testid", "pending");
  const status = el("div", "status", label || "queued…");
  const bar = document.createElement("progress"); bar.max = 1; bar.value = 0;
  const cancel = el("button", null, "Cancel"); cancel.type = "button"; cancel.setAttribute("data-testid", "cancel");
  t.append(status, bar, cancel);
  return { turn: t, status, bar, cancel };
}

function track(job, p) {
  let finished = false;
  p.cancel.onclick = () => api("POST", job.cancel_url).catch((e) => showError(e.message));
  const es = new EventSource(job.events_url);
  const end = () => { finished = true; es.close(); };
  es.addEventListener("status", (e) => {
    const d = JSON.parse(e.data);
    p.status.textContent = d.status === "running" ? (d.batch_size > 1 ? `drawing (in a batch of ${d.batch_size})…` : "drawing…") : "queued…";
  });
  es.addEventListener("progress", (e) => {
    const d = JSON.parse(e.data);
    if (d.total) { p.bar.max = d.total; p.bar.value = d.tokens; }
    if (d.phase === "blueprint" || d.phase === "fine") p.status.textContent = `drawing the ${d.phase === "blueprint" ? "blueprint" : "fine tokens"}: ${d.tokens}/${d.total} tokens`;
  });
  es.addEventListener("preview", (e) => {
    const clip = JSON.parse(e.data).clip;
    let wrap = p.turn.querySelector(".stage");
    if (!wrap) { wrap = el("div", "stage"); p.turn.insertBefore(wrap, p.status); }
    wrap.innerHTML = "";
    const v = videoOf(clip); v.setAttribute("data-testid", "preview-video");
    wrap.appendChild(v);
    p.turn.insertBefore(el("div", "preview-label", "blueprint preview (half size)"), p.status);
  });
  es.addEventListener("done", (e) => { end(); showResult(JSON.parse(e.data).result, p.turn); });
  es.addEventListener("failed", (e) => { end(); showError(JSON.parse(e.data).error, p.turn); });
  es.addEventListener("cancelled", (e) => { end(); showError("cancelled", p.turn); });
  es.onerror = () => {
    if (finished) return;
    // the stream broke: ask once for the job's state (EventSource retries by itself as well)
    api("GET", "/api/jobs/" + job.id).then((j) => {
      if (finished) return;
      if (j.status === "done") { end(); showResult(j.result, p.turn); }
      else if (j.status === "failed" || j.status === "cancelled") { end(); showError(j.error || j.status, p.turn); }
    }).catch(() => {});
  };
}

function showResult(result, turn) {
  turn.classList.remove("pending");
  turn.removeAttribute("data-testid");
  if (result.kind === "text") { turn.innerHTML = ""; turn.textContent = result.text; turn.setAttribute("data-testid", "reply-text"); return; }
  const clips = result.clips || [];
  clipCard(clips[0], turn);
  for (const c of clips.slice(1)) clipCard(c, addTurn("assistant"));
}

async function send(text) {
  addTurn("user", text);
  const p = pendingTurn();
  try {
    const job = await api("POST", `/api/sessions/${sessionId}/messages`, { text, ...settings() });
    track(job, p);
  } catch (e) { showError(e.message, p.turn); }
}

async function edit(clip, task, extra) {
  const s = settings();
  const words = { instruct: extra.instruction, continue: "continue it", outpaint: "extend the view outward",
                  interpolate: "interpolate the missing frames", inpaint: `repaint the box ${extra.mask}` };
  addTurn("user", `${words[task]} (clip ${clip.id.slice(-4)})`);
  const p = pendingTurn();
  const body = { clip_id: clip.id, task, session_id: sessionId, seed: s.seed, cfg: s.cfg, temperature: s.temperature, ...extra };
  if (limits && (clip.width > limits.max_side || clip.height > limits.max_side)) { body.width = s.width; body.height = s.height; }
  try { track(await api("POST", "/api/edits", body), p); } catch (e) { showError(e.message, p.turn); }
}

async function upload(file) {
  const t = addTurn("user", "uploading " + file.name + "…");
  const fd = new FormData(); fd.append("file", file, file.name);
  try { clipCard(await api("POST", "/api/uploads", fd), t); } catch (e) { showError(e.message, t); }
}

// --- start -----------------------------------------------------------------------------------
async function start() {
  let h;
  try { h = await api("GET", "/api/health"); } catch (e) { $("model-status").textContent = "offline"; showError(e.message); return; }
  if (h.status !== "ok") {
    $("model-status").textContent = "no model";
    const b = $("banner"); b.hidden = false; b.textContent = "No model available: " + h.error;
    $("prompt").disabled = true; $("send").disabled = true; $("upload").disabled = true;
    return;
  }
  limits = h.limits;
  $("model-status").textContent = "model: " + (h.model || "loaded");
  const frames = []; for (let f = 1; f <= limits.max_frames; f += limits.frame_step) frames.push(f);
  const sides = []; for (let s = limits.side_multiple; s <= limits.max_side; s += limits.side_multiple) sides.push(s);
  const d = limits.default_clip || [17, 128, 128];
  fillSelect($("frames"), frames, d[0]); fillSelect($("height"), sides, d[1]); fillSelect($("width"), sides, d[2]);
  $("limits").textContent = `up to ${limits.max_frames} frames, ${limits.max_side}px a side; context ${limits.max_positions} tokens`;
  try { sessionId = (await api("POST", "/api/sessions")).id; } catch (e) { showError(e.message); return; }
  document.body.dataset.ready = "1";
}

$("composer").onsubmit = (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  send(text);
};
$("prompt").onkeydown = (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); } };
$("upload").onchange = (e) => { const f = e.target.files[0]; if (f) upload(f); e.target.value = ""; };
start();
