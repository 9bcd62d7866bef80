// The Fluxgate demo page: pick a task type, fill the form made from its schema, follow the job
// live and see its result. Plain browser JavaScript, no build step: the API calls go through the
// TypeScript client's committed build (clients/js/dist), served by the gateway at /demo/client/.
import {
  AuthenticationError,
  BadRequestError,
  ConnectionFailed,
  ConflictError,
  Fluxgate,
  NotFoundError,
  TERMINAL_STATUSES,
} from "/demo/client/index.js";
import { describeInput, formValues, renderForm } from "/static/form.js";

const KEY_STORE = "fluxgate.apiKey";
const TYPE_STORE = "fluxgate.taskType";
const RECENT_STORE = "fluxgate.recent";
const RECENT_MAX = 12;

const $ = (id) => document.getElementById(id);
const form = $("job-form");
const fields = $("fields");
const typeSelect = $("task-type");
const apiKeyInput = $("api-key");
let types = new Map();
let current = null; // {taskId, urls, label, abort, final}

apiKeyInput.value = localStorage.getItem(KEY_STORE) || "";
apiKeyInput.addEventListener("change", () => localStorage.setItem(KEY_STORE, apiKeyInput.value.trim()));

// A client per call, so a key typed a moment ago is the one sent.
const client = () => new Fluxgate({ apiKey: apiKeyInput.value.trim() || null });

function showError(message, field) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  // `/tasks` names an input field `input.<name>`; `/flux` names it bare.
  const name = field ? field.replace(/^input\./, "") : null;
  const input = name ? form.querySelector(`[name="${CSS.escape(name)}"]`) : null;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
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
      if (view.waiting_for === "identical_job") return "Queued: an identical request is running; its result will be this one's.";
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
  $("status").dataset.waitingFor = view.waiting_for || "";
  if (view.cost != null) {
    $("cost").textContent = `Cost: ${view.cost} megapixel-steps`;
    $("cost").hidden = false;
  }
  const bar = $("progress");
  if (view.progress > Number(bar.value)) bar.value = view.progress;
  showPreview(view);
  if (view.status === "succeeded") showResult(view);
  else if (TERMINAL_STATUSES.has(view.status)) remember(view, null); // in the gallery too, saying so
  if (view.status === "failed" && view.error) showError(view.error.message, null);
  if (TERMINAL_STATUSES.has(view.status)) finish();
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

function showResult(view) {
  const result = view.result || { images: [] };
  const [first, ...more] = result.images || [];
  if (first) {
    $("result-image").src = first.url;
    const seed = first.seed == null ? "" : `, seed ${first.seed}`;
    $("result-caption").textContent = `${first.width}×${first.height}${seed}`;
    $("result").hidden = false;
  }
  const extra = $("result-more");
  extra.replaceChildren(...more.map((image) => Object.assign(document.createElement("img"), { src: image.url, alt: "another output" })));
  // Keys beside the images (faces, prompt, translations, ...), as the API gives them.
  const { images, timings, ...data } = result;
  $("result-data").textContent = Object.keys(data).length ? JSON.stringify(data, null, 2) : "";
  $("result-data").hidden = !Object.keys(data).length;
  remember(view, first ? first.url : null);
}

function finish() {
  if (!current) return;
  current.final = true;
  $("submit").disabled = false;
  $("cancel").disabled = true;
}

async function follow(job) {
  try {
    for await (const view of client().stream(job.taskId, { signal: job.abort.signal })) show(view);
  } catch (error) {
    if (job !== current || job.final || job.abort.signal.aborted) return;
    if (error instanceof NotFoundError) showError("This task does not exist (or belongs to another key).");
    else if (error instanceof AuthenticationError) showError("The API key was refused.");
    else showError(`Lost the connection to the server: ${error.message}`);
  }
}

function resetCurrent() {
  clearError();
  for (const id of ["result", "cost", "preview", "result-data"]) $(id).hidden = true;
  $("result-more").replaceChildren();
  $("preview-image").removeAttribute("src");
  $("progress").value = 0;
}

async function submit(event) {
  event.preventDefault();
  resetCurrent();
  const type = typeSelect.value;
  const input = formValues(fields);
  $("submit").disabled = true;
  $("status").textContent = "Submitting...";
  delete $("status").dataset.status;
  let submitted;
  try {
    submitted = await client().submit(type, input);
  } catch (error) {
    $("submit").disabled = false;
    $("status").textContent = "Ready.";
    if (error instanceof AuthenticationError) {
      // Auth is on: open the key field so the user sees where the key goes.
      $("key-box").open = true;
      showError(error.message || "An API key is needed.");
      return apiKeyInput.focus();
    }
    if (error instanceof BadRequestError) return showError(error.message, error.field);
    if (error instanceof ConnectionFailed) return showError(`Could not reach the server: ${error.message}`);
    return showError(error.message || String(error));
  }
  if (current) current.abort.abort();
  current = { taskId: submitted.task_id, urls: submitted.urls, label: describeInput(type, input), abort: new AbortController(), final: false };
  $("task-link").textContent = submitted.task_id;
  $("task-link").href = submitted.urls.status;
  $("task").hidden = false;
  $("status").textContent = "Queued.";
  $("cancel").disabled = false;
  follow(current);
}

async function cancel() {
  if (!current) return;
  $("cancel").disabled = true;
  try {
    await client().cancel(current.taskId);
  } catch (error) {
    if (!(error instanceof ConflictError)) showError(`Cancel failed: ${error.message}`);
  }
}

function remember(view, url) {
  const taskId = view.task_id;
  const recent = JSON.parse(localStorage.getItem(RECENT_STORE) || "[]").filter((item) => item.taskId !== taskId);
  recent.unshift({ taskId, url, status: view.status, label: current.label, at: new Date().toISOString() });
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
      image.alt = item.label || item.prompt || "";
      link.append(image);
    } else {
      link = document.createElement("div");
      link.className = "ended";
      link.textContent = item.status;
    }
    const caption = document.createElement("div");
    caption.textContent = item.label || item.prompt || ""; // textContent: a prompt is never HTML
    entry.append(link, caption);
    gallery.append(entry);
  }
}

function chooseType(name) {
  const type = types.get(name);
  if (!type) return;
  typeSelect.value = name;
  localStorage.setItem(TYPE_STORE, name);
  $("type-description").textContent = type.available ? type.description
    : `${type.description} Not configured on this server: a submit answers 503.`;
  clearError();
  renderForm(fields, type);
}

async function loadTypes() {
  try {
    const listed = await client().taskTypes();
    types = new Map(listed.map((type) => [type.name, type]));
  } catch (error) {
    return showError(`Could not load the task types: ${error.message}`);
  }
  typeSelect.replaceChildren(...[...types.values()].map((type) => new Option(type.available ? type.name : `${type.name} (not configured)`, type.name)));
  const saved = localStorage.getItem(TYPE_STORE);
  chooseType(types.has(saved) ? saved : "flux");
  $("submit").disabled = false;
}

form.addEventListener("submit", submit);
$("cancel").addEventListener("click", cancel);
typeSelect.addEventListener("change", () => chooseType(typeSelect.value));
renderGallery();
loadTypes();
