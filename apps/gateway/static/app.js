// The Fluxgate demo page: submit a FLUX job, follow it over the WebSocket, show the image.
// Plain browser JavaScript, no build step. Everything it calls is the public API.
"use strict";

const KEY_STORE = "fluxgate.apiKey";
const RECENT_STORE = "fluxgate.recent";
const RECENT_MAX = 12;
const FINAL = new Set(["succeeded", "failed", "canceled", "expired"]);

const $ = (id) => document.getElementById(id);
const form = $("job-form");
const apiKeyInput = $("api-key");
let current = null; // {taskId, urls, socket, final}

apiKeyInput.value = localStorage.getItem(KEY_STORE) || "";
apiKeyInput.addEventListener("change", () => localStorage.setItem(KEY_STORE, apiKeyInput.value.trim()));

function authHeaders() {
  const key = apiKeyInput.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showError(message, field) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  if (field) {
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  }
}

function clearError() {
  $("error").hidden = true;
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function describe(view) {
  switch (view.status) {
    case "queued":
      if (view.waiting_for === "model_server") return "Queued: waiting for a model server to start.";
      if (view.waiting_for === "capacity") return "Queued: waiting for a free model server.";
      return view.queue_position == null ? "Queued."
        : view.queue_position === 0 ? "Queued: next to start."
        : `Queued: ${view.queue_position} job(s) ahead.`;
    case "running": return `Running: ${view.progress}%`;
    case "succeeded": {
      const t = view.timings || {};
      const total = (t.queued_ms || 0) + (t.running_ms || 0) + (t.delivery_ms || 0);
      return `Done in ${(total / 1000).toFixed(2)} s.`;
    }
    case "failed": return `Failed: ${view.error ? view.error.message : "unknown error"}`;
    case "canceled": return "Canceled.";
    case "expired":
      return view.error && view.error.code === "no_capacity"
        ? `Expired: ${view.error.message}` : "Expired before it started.";
    default: return view.status;
  }
}

function show(view) {
  if (!current || view.task_id !== current.taskId) return;
  $("status").textContent = describe(view);
  $("status").dataset.status = view.status;
  if (view.cost != null) {
    $("cost").textContent = `Cost: ${view.cost} megapixel-steps`;
    $("cost").hidden = false;
  }
  const bar = $("progress");
  if (view.progress > Number(bar.value)) bar.value = view.progress;
  showPreview(view);
  if (view.status === "succeeded" && view.result && view.result.images.length) {
    const image = view.result.images[0];
    $("result-image").src = image.url;
    $("result-caption").textContent = `${image.width}×${image.height}, seed ${image.seed}`;
    $("result").hidden = false;
    remember(view, image.url);
  } else if (FINAL.has(view.status) && view.status !== "succeeded") {
    remember(view, null); // failed, canceled, expired: in the gallery too, saying so
  }
  if (view.status === "failed" && view.error) showError(view.error.message, null);
  if (FINAL.has(view.status)) finish();
}

// While the job runs, each progress event of a job that asked for previews names the latest one.
function showPreview(view) {
  const preview = view.preview;
  if (view.status === "succeeded") {
    $("preview").hidden = true; // the image itself takes its place
  } else if (preview && $("preview-image").getAttribute("src") !== preview.url) {
    $("preview-image").src = preview.url;
    $("preview-caption").textContent = `Preview: step ${preview.step} of ${preview.total}`;
    $("preview").hidden = false;
  }
}

function finish() {
  if (!current) return;
  current.final = true;
  $("submit").disabled = false;
  $("cancel").disabled = true;
}

function follow(taskId, urls, attempt = 0) {
  const key = apiKeyInput.value.trim();
  // Browsers cannot set headers on a WebSocket: the key goes in the query string.
  const url = key ? `${urls.ws}?token=${encodeURIComponent(key)}` : urls.ws;
  const socket = new WebSocket(url);
  current.socket = socket;
  socket.onmessage = (message) => show(JSON.parse(message.data));
  socket.onclose = (event) => {
    if (!current || current.taskId !== taskId || current.final) return;
    if (event.code === 4404) return showError("This task does not exist (or belongs to another key).");
    if (event.code === 4401) return showError("The API key was refused.");
    // Dropped: reconnect; the server sends the current state first, so nothing is missed.
    if (attempt < 5) setTimeout(() => follow(taskId, urls, attempt + 1), 300 * 2 ** attempt);
    else showError("Lost the connection to the server.");
  };
}

async function submit(event) {
  event.preventDefault();
  clearError();
  const body = { prompt: $("prompt").value };
  for (const name of ["width", "height", "num_inference_steps", "seed"]) {
    const input = form.querySelector(`[name="${name}"]`);
    if (input.value !== "") body[name] = Number(input.value);
  }
  if ($("previews").checked) body.preview = true;
  $("submit").disabled = true;
  $("result").hidden = true;
  $("cost").hidden = true;
  $("preview").hidden = true;
  $("preview-image").removeAttribute("src");
  $("progress").value = 0;
  $("status").textContent = "Submitting...";
  let answer;
  try {
    answer = await fetch("/flux", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(body),
    });
  } catch (error) {
    $("submit").disabled = false;
    $("status").textContent = "Ready.";
    return showError(`Could not reach the server: ${error.message}`);
  }
  const payload = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    $("submit").disabled = false;
    $("status").textContent = "Ready.";
    const problem = payload.error || {};
    if (answer.status === 401) {
      // Auth is on: open the key field so the user sees where the key goes.
      $("key-box").open = true;
      showError(problem.message || "An API key is needed.");
      return apiKeyInput.focus();
    }
    return showError(problem.message || `The server answered ${answer.status}.`, problem.field);
  }
  if (current && current.socket) current.socket.close();
  current = { taskId: payload.task_id, urls: payload.urls, socket: null, final: false };
  $("task-link").textContent = payload.task_id;
  $("task-link").href = payload.urls.status;
  $("task").hidden = false;
  $("status").textContent = "Queued.";
  $("cancel").disabled = false;
  follow(payload.task_id, payload.urls);
}

async function cancel() {
  if (!current) return;
  $("cancel").disabled = true;
  const answer = await fetch(current.urls.cancel, { method: "POST", headers: authHeaders() });
  if (!answer.ok && answer.status !== 409) {
    const problem = (await answer.json().catch(() => ({}))).error || {};
    showError(problem.message || `Cancel failed: ${answer.status}.`);
  }
}

function remember(view, url) {
  const taskId = view.task_id;
  const recent = JSON.parse(localStorage.getItem(RECENT_STORE) || "[]")
    .filter((item) => item.taskId !== taskId);
  recent.unshift({
    taskId, url, status: view.status, prompt: $("prompt").value, at: new Date().toISOString(),
  });
  localStorage.setItem(RECENT_STORE, JSON.stringify(recent.slice(0, RECENT_MAX)));
  renderGallery();
}

function renderGallery() {
  const gallery = $("gallery");
  gallery.replaceChildren();
  for (const item of JSON.parse(localStorage.getItem(RECENT_STORE) || "[]")) {
    const entry = document.createElement("li");
    entry.dataset.status = item.status || "succeeded";
    let link;
    if (item.url) {
      link = document.createElement("a");
      link.href = item.url;
      const image = document.createElement("img");
      image.src = item.url;
      image.alt = item.prompt;
      link.append(image);
    } else {
      link = document.createElement("div");
      link.className = "ended";
      link.textContent = item.status;
    }
    const caption = document.createElement("div");
    caption.textContent = item.prompt; // textContent: a prompt is never HTML
    entry.append(link, caption);
    gallery.append(entry);
  }
}

form.addEventListener("submit", submit);
$("cancel").addEventListener("click", cancel);
renderGallery();
