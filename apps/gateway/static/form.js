// A form for any task type, made from the JSON schema of its input (`GET /task-types`): text,
// numbers with their bounds, enums as selects, booleans as boxes, image fields as a file picker
// that also takes a dropped file and shows it. `values()` reads it back as the task's input.

// Shown, and filled in, where the schema's own default would make the demo slow on a CPU.
const DEMO_DEFAULTS = {
  flux: { prompt: "a red fox in the snow, golden hour", width: 256, height: 256, num_inference_steps: 8 },
  style_transfer: { prompt: "an oil painting", num_inference_steps: 8, max_side: 256 },
  prompt_refine: { prompt: "a fox in snow" },
  translate: { text: "Hello world." },
};
const LABELS = {
  num_inference_steps: "Steps",
  preview: "Show previews: watch the image form (costs a little time per step)",
};
// Fields the demo leaves to the API: nested objects, and what only an API caller wants.
const HIDDEN = new Set(["enable_base64_output"]);

/** The field's schema with `$ref`s resolved and an optional `anyOf: [X, null]` unwrapped. */
function resolve(node, defs) {
  let schema = node;
  if (schema.$ref) schema = { ...defs[schema.$ref.replace("#/$defs/", "")], ...schema, $ref: undefined };
  if (Array.isArray(schema.anyOf)) {
    const options = schema.anyOf.map((each) => resolve(each, defs));
    const real = options.filter((each) => each.type !== "null");
    const nullable = real.length < options.length;
    // A string or a list of strings (translate's `text`): one per line.
    if (real.some((each) => each.type === "array")) return { ...schema, type: "lines", nullable };
    if (real.length === 1) return { ...real[0], ...schema, anyOf: undefined, type: real[0].type, nullable };
  }
  return schema;
}

// The property's own title; one that names a shared definition (`OutputFormat`) is no label.
function labelText(name, raw, required) {
  const words = name.charAt(0).toUpperCase() + name.slice(1).replaceAll("_", " ");
  return `${LABELS[name] || (raw.$ref ? words : raw.title || words)}${required ? " *" : ""}`;
}

function imageField(name, schema, required, fieldId) {
  const box = document.createElement("div");
  box.className = "drop";
  box.dataset.field = name;
  const input = document.createElement("input");
  Object.assign(input, { type: "file", accept: "image/*", name, id: fieldId });
  input.required = required;
  const hint = document.createElement("span");
  hint.textContent = "Choose an image or drop one here";
  const preview = document.createElement("img");
  preview.alt = `${name} to upload`;
  preview.hidden = true;
  const show = () => {
    const file = input.files && input.files[0];
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.hidden = !file;
    if (file) preview.src = URL.createObjectURL(file);
    hint.textContent = file ? `${file.name} (${Math.ceil(file.size / 1024)} KB)` : "Choose an image or drop one here";
  };
  input.addEventListener("change", show);
  box.addEventListener("dragover", (event) => {
    event.preventDefault();
    box.classList.add("over");
  });
  box.addEventListener("dragleave", () => box.classList.remove("over"));
  box.addEventListener("drop", (event) => {
    event.preventDefault();
    box.classList.remove("over");
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    show();
  });
  box.append(input, hint, preview);
  return box;
}

function control(name, schema, required, value, fieldId) {
  if (Array.isArray(schema.enum)) {
    const select = document.createElement("select");
    if (!required && schema.default == null) select.append(new Option("(none)", ""));
    for (const option of schema.enum) select.append(new Option(String(option), String(option)));
    select.value = value == null ? "" : String(value);
    return select;
  }
  if (schema.type === "boolean") {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = Boolean(value);
    return box;
  }
  if (schema.type === "integer" || schema.type === "number") {
    const input = document.createElement("input");
    input.type = "number";
    input.step = schema.type === "integer" ? (name === "width" || name === "height" ? "16" : "1") : "any";
    if (schema.minimum != null) input.min = String(schema.minimum);
    if (schema.maximum != null) input.max = String(schema.maximum);
    if (value != null) input.value = String(value);
    if (value == null && schema.nullable) input.placeholder = name === "seed" ? "random" : "default";
    return input;
  }
  const long = schema.type === "lines" || name.includes("prompt") || (schema.maxLength || 0) > 200;
  const input = document.createElement(long ? "textarea" : "input");
  if (long) input.rows = 2;
  if (schema.type === "lines") input.placeholder = "one text per line";
  else if (schema.pattern) input.placeholder = "e.g. de";
  input.value = value == null ? "" : String(value);
  return input;
}

/** Fills `container` with the fields of `type` (an entry of `GET /task-types`). */
export function renderForm(container, type) {
  const schema = type.input_schema || {};
  const defs = schema.$defs || {};
  const required = new Set(schema.required || []);
  const demo = DEMO_DEFAULTS[type.name] || {};
  const imageFields = new Set(type.image_fields || []);
  container.replaceChildren();
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    const field = resolve(raw, defs);
    if (HIDDEN.has(name) || field.type === "object") continue;
    const isRequired = required.has(name);
    const fieldId = `field-${name}`;
    const label = document.createElement("label");
    label.dataset.field = name;
    if (field.description) label.title = field.description;
    if (imageFields.has(name)) {
      label.className = "wide";
      label.append(labelText(name, raw, isRequired), imageField(name, field, isRequired, fieldId));
      container.append(label);
      continue;
    }
    const value = name in demo ? demo[name] : field.default;
    const input = control(name, field, isRequired, value, fieldId);
    Object.assign(input, { name, id: fieldId });
    input.required = isRequired;
    input.dataset.kind = field.type || "string";
    if (field.type === "boolean") {
      label.className = "wide check";
      label.append(input, labelText(name, raw, isRequired));
    } else {
      if (input.tagName === "TEXTAREA") label.className = "wide";
      label.append(labelText(name, raw, isRequired), input);
    }
    container.append(label);
  }
}

/** The task's input as the form says: blank optional fields left out (the server's default),
 * numbers as numbers, images as the chosen File (sent as a multipart part). */
export function formValues(container) {
  const input = {};
  for (const element of container.querySelectorAll("[name]")) {
    const { name } = element;
    if (element.type === "file") {
      if (element.files && element.files[0]) input[name] = element.files[0];
    } else if (element.type === "checkbox") {
      input[name] = element.checked;
    } else if (element.value.trim() === "") {
      continue;
    } else if (element.dataset.kind === "integer" || element.dataset.kind === "number") {
      input[name] = Number(element.value);
    } else if (element.dataset.kind === "lines") {
      const lines = element.value.split("\n").map((line) => line.trim()).filter(Boolean);
      input[name] = lines.length === 1 ? lines[0] : lines;
    } else {
      input[name] = element.value;
    }
  }
  return input;
}

/** A short name for what the form asks, for the gallery. */
export function describeInput(typeName, input) {
  const text = input.prompt || (typeof input.text === "string" ? input.text : "");
  const file = Object.values(input).find((value) => value instanceof File);
  return [typeName, text || (file ? file.name : "")].filter(Boolean).join(": ");
}
