// The client against a real stack (redis, gateway, notifier, worker, balancer, tiny FLUX
// inference), started by tests/client_js/test_js_client.py, which passes its addresses in.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  APIError,
  BadRequestError,
  ConflictError,
  ConnectionFailed,
  Fluxgate,
  FluxgateError,
  NotFoundError,
  TaskCanceledError,
  UnsupportedTaskTypeError,
  WaitTimeout,
  WebhookVerificationError,
  verifyWebhook,
} from "../dist/index.js";
import { pollUntil, stackFromEnv, startProxy, startReceiver } from "./support.js";

const gateway = stackFromEnv();
const notifierWs = stackFromEnv("FLUXGATE_TEST_NOTIFIER_WS");
const webhookSecret = stackFromEnv("FLUXGATE_TEST_WEBHOOK_SECRET");
let seed = 7_000_000 + Math.floor(Math.random() * 1_000_000);
// A seed of its own per job: identical requests in flight together would share one run.
const small = (extra = {}) => ({ prompt: "a red fox", width: 64, height: 64, num_inference_steps: 2, seed: seed++, ...extra });
const client = new Fluxgate({ baseUrl: gateway });

describe("submit, wait and run", () => {
  test("flux: submit answers queued with urls, wait follows it to the image", async () => {
    const submitted = await client.flux(small({ width: 128, height: 64 }));
    assert.equal(submitted.status, "queued");
    assert.equal(submitted.replayed, false);
    assert.match(submitted.urls.ws, /^ws:\/\/.*\/ws\/tasks\//);
    const seen = [];
    const view = await client.wait(submitted.task_id, { timeout: 60, onUpdate: (v) => seen.push(v) });
    assert.equal(view.status, "succeeded");
    assert.equal(seen[0].event, "snapshot");
    assert.deepEqual(seen.map((v) => v.seq), [...seen.map((v) => v.seq)].sort((a, b) => a - b));
    const [image] = view.result.images;
    assert.equal(image.width, 128);
    assert.equal(image.height, 64);
    const bytes = await client.download(image.url);
    assert.deepEqual([...bytes.slice(1, 4)], [...Buffer.from("PNG")]);
  });

  test("the same Idempotency-Key answers the same task, replayed", async () => {
    const input = small();
    const first = await client.submit("flux", input, { idempotencyKey: `js-${input.seed}` });
    const again = await client.submit("flux", input, { idempotencyKey: `js-${input.seed}` });
    assert.equal(again.task_id, first.task_id);
    assert.equal(again.replayed, true);
    await client.wait(first.task_id, { timeout: 60 });
  });

  test("an upload: upscale takes a Blob as a multipart file part", async () => {
    const made = await client.run("flux", small(), { timeout: 60 });
    const png = await client.download(made.result.images[0].url);
    const view = await client.run("upscale", { image: new Blob([png], { type: "image/png" }), scale: 2, method: "lanczos" }, { timeout: 60 });
    assert.equal(view.type, "upscale");
    assert.equal(view.result.images[0].width, 128);
    assert.equal(view.result.method, "lanczos");
  });

  test("an image as a data: URI in the JSON (stylize)", async () => {
    const made = await client.run("flux", small(), { timeout: 60 });
    const png = await client.download(made.result.images[0].url);
    const image = `data:image/png;base64,${Buffer.from(png).toString("base64")}`;
    const view = await client.run("stylize", { image, preset: "pencil_sketch" }, { timeout: 60 });
    assert.equal(view.result.preset, "pencil_sketch");
    assert.equal(view.result.images[0].width, 64);
  });

  test("taskTypes lists every type with its input schema", async () => {
    const types = await client.taskTypes();
    const names = types.map((t) => t.name);
    for (const name of ["flux", "upscale", "background_removal", "stylize"]) assert.ok(names.includes(name), names);
    const upscale = types.find((t) => t.name === "upscale");
    assert.deepEqual(upscale.image_fields, ["image"]);
    assert.equal(upscale.input_schema.properties.scale.default, 2);
  });
});

describe("streaming", () => {
  for (const transport of ["websocket", "sse", "poll"]) {
    test(`${transport}: the snapshot first, then each newer view, until the job ends`, async () => {
      const { task_id: taskId } = await client.flux(small({ num_inference_steps: 6 }));
      const views = [];
      for await (const view of client.stream(taskId, { transport, timeout: 60 })) views.push(view);
      if (transport !== "poll") assert.equal(views[0].event, "snapshot");
      assert.equal(views.at(-1).status, "succeeded");
      const seqs = views.map((v) => v.seq);
      assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]), `seq must only grow: ${seqs}`);
      if (transport !== "poll") assert.ok(views.some((v) => v.event === "progress"), views.map((v) => v.event));
    });
  }

  for (const transport of ["websocket", "sse"]) {
    test(`${transport}: a cut connection is reopened and its snapshot brings what was missed`, async () => {
      const direct = await client.flux(small({ num_inference_steps: 30 })); // 30 x 100 ms
      const target = transport === "websocket" ? new URL(notifierWs).host : new URL(gateway).host;
      const proxy = await startProxy(target);
      try {
        const via = `127.0.0.1:${proxy.port}`;
        // timeout 2: a handshake refused while the line is down fails within 2 s (see socketViews)
        const proxied = new Fluxgate(transport === "websocket" ? { baseUrl: gateway, wsUrl: `ws://${via}`, timeout: 2 } : { baseUrl: `http://${via}`, timeout: 2 });
        const views = [];
        let cutAt = null;
        let reopened = null;
        for await (const view of proxied.stream(direct.task_id, { transport, timeout: 60 })) {
          views.push(view);
          if (cutAt === null && view.status === "running") {
            // Cut the line and keep it down while the job moves on by two views or more.
            cutAt = view.seq;
            proxy.refusing = true;
            proxy.cut();
            reopened = pollUntil(async () => (await client.get(direct.task_id)).seq >= cutAt + 2, { what: "the job to move on" }).then(() => {
              proxy.refusing = false;
            });
          }
        }
        await reopened;
        assert.ok(cutAt !== null, "the job was never seen running");
        assert.ok(proxy.connections >= 2, `reconnected: ${proxy.connections} connections`);
        const after = views.find((v) => v.seq > cutAt);
        assert.equal(after.event, "snapshot", "the first view after the cut is the new connection's snapshot");
        assert.ok(after.seq >= cutAt + 2, `the snapshot covers the views missed while cut: ${cutAt} -> ${after.seq}`);
        assert.equal(views.at(-1).status, "succeeded");
        const seqs = views.map((v) => v.seq);
        assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]), `no view twice or backwards: ${seqs}`);
      } finally {
        await proxy.close();
      }
    });
  }

  test("auto: without a WebSocket constructor it follows over server-sent events", async () => {
    const sseOnly = new Fluxgate({ baseUrl: gateway, WebSocket: null });
    const { task_id: taskId } = await sseOnly.flux(small());
    const seen = [];
    const final = await sseOnly.wait(taskId, { timeout: 60, onUpdate: (v) => seen.push(v.event) });
    assert.equal(final.status, "succeeded");
    assert.equal(seen[0], "snapshot");
  });

  test("auto: a WebSocket that never opens falls back to server-sent events", async () => {
    const proxy = await startProxy(new URL(notifierWs).host);
    proxy.refusing = true;
    try {
      // Submitted elsewhere, so the socket it knows is the refusing one; timeout 1: each refused
      // handshake fails within 1 s.
      const fallback = new Fluxgate({ baseUrl: gateway, wsUrl: `ws://127.0.0.1:${proxy.port}`, timeout: 1 });
      const { task_id: taskId } = await client.flux(small());
      const final = await fallback.wait(taskId, { timeout: 60 });
      assert.equal(final.status, "succeeded");
      assert.ok(proxy.refused >= 2, `the socket was tried first: ${proxy.refused}`);
    } finally {
      await proxy.close();
    }
  });

  test("wait gives up with WaitTimeout; the job goes on", async () => {
    const { task_id: taskId } = await client.flux(small({ num_inference_steps: 20 }));
    await assert.rejects(client.wait(taskId, { timeout: 0.3 }), (error) => error instanceof WaitTimeout && error.taskId === taskId);
    assert.equal((await client.wait(taskId, { timeout: 60 })).status, "succeeded");
  });
});

describe("cancel", () => {
  test("a running job stops at its next step and ends canceled", async () => {
    const { task_id: taskId } = await client.flux(small({ num_inference_steps: 60 }));
    for await (const view of client.stream(taskId, { timeout: 30 })) if (view.status === "running") break;
    const answer = await client.cancel(taskId);
    assert.ok(["running", "canceled"].includes(answer.status), answer.status);
    const final = await client.wait(taskId, { timeout: 30 });
    assert.equal(final.status, "canceled");
    assert.ok(final.progress < 100);
    // Canceling a canceled job answers its view again.
    assert.equal((await client.cancel(taskId)).status, "canceled");
  });

  test("run of a job canceled while it waits throws TaskCanceledError with the view", async () => {
    const running = client.run("flux", small({ num_inference_steps: 60 }), { timeout: 30, onUpdate: (view) => {
      if (view.event === "snapshot") void client.cancel(view.task_id);
    } });
    await assert.rejects(running, (error) => error instanceof TaskCanceledError && error.view.status === "canceled");
  });

  test("canceling a finished job is a ConflictError that carries its view", async () => {
    const done = await client.run("flux", small(), { timeout: 60 });
    await assert.rejects(client.cancel(done.task_id), (error) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.statusCode, 409);
      assert.equal(error.view.status, "succeeded");
      return true;
    });
  });
});

describe("errors map to their classes", () => {
  test("422: BadRequestError naming the field, in words", async () => {
    await assert.rejects(client.flux(small({ width: 100 })), (error) => {
      assert.ok(error instanceof BadRequestError && error instanceof APIError && error instanceof FluxgateError);
      assert.equal(error.statusCode, 422);
      assert.equal(error.code, "invalid_input");
      assert.equal(error.field, "width");
      assert.match(error.message, /multiple of 16/);
      assert.match(String(error), /^BadRequestError: 422 invalid_input \(field width\): /);
      return true;
    });
  });

  test("a type the server does not have: UnsupportedTaskTypeError", async () => {
    await assert.rejects(client.submit("no_such_type", {}), (error) => error instanceof UnsupportedTaskTypeError && error.field === "type");
  });

  test("a bad upload is a 422 on input.image", async () => {
    const junk = new Blob([new Uint8Array([1, 2, 3, 4])], { type: "image/png" });
    await assert.rejects(client.submit("upscale", { image: junk }), (error) => error instanceof BadRequestError && error.field === "input.image");
  });

  test("404: NotFoundError from get, cancel and both streams", async () => {
    const unknown = "00000000-0000-4000-8000-000000000000";
    await assert.rejects(client.get(unknown), (error) => error instanceof NotFoundError && error.statusCode === 404);
    await assert.rejects(client.cancel(unknown), NotFoundError);
    await assert.rejects(client.wait(unknown, { transport: "sse", timeout: 10 }), NotFoundError);
    // Straight at the notifier, so the close code (4404) is what says it.
    const socketOnly = new Fluxgate({ baseUrl: gateway, wsUrl: notifierWs });
    await assert.rejects(socketOnly.wait(unknown, { transport: "websocket", timeout: 10 }), NotFoundError);
  });

  test("a server that cannot be reached: ConnectionFailed", async () => {
    const proxy = await startProxy(new URL(gateway).host);
    proxy.refusing = true;
    try {
      const nowhere = new Fluxgate({ baseUrl: `http://127.0.0.1:${proxy.port}`, maxRetries: 1 });
      await assert.rejects(nowhere.get("x"), ConnectionFailed);
      assert.equal(proxy.refused, 2, "a GET is retried once, then given up");
    } finally {
      await proxy.close();
    }
  });
});

describe("webhooks", () => {
  let receiver;
  before(async () => {
    receiver = await startReceiver();
  });
  after(() => receiver.close());

  test("a real signed webhook verifies; tampered, too old or another secret does not", async () => {
    const { task_id: taskId } = await client.flux(small(), { webhookUrl: receiver.url, webhookEvents: ["completed"] });
    const hook = await pollUntil(
      () => receiver.received.find((r) => JSON.parse(r.body).data.task_id === taskId),
      { timeoutMs: 60_000, what: "the completion webhook" },
    );
    const message = await verifyWebhook(hook.headers, hook.body, webhookSecret);
    assert.equal(message.type, "task.succeeded");
    assert.equal(message.data.task_id, taskId);
    // A Fetch Headers object and a string body verify the same; so does a rotated list of secrets.
    await verifyWebhook(new Headers(Object.entries(hook.headers)), hook.body.toString(), ["whsec_b3RoZXI=", webhookSecret]);

    const tampered = Buffer.from(hook.body.toString().replace("succeeded", "failed"));
    await assert.rejects(verifyWebhook(hook.headers, tampered, webhookSecret), WebhookVerificationError);
    const sentAt = Number(hook.headers["webhook-timestamp"]);
    await assert.rejects(verifyWebhook(hook.headers, hook.body, webhookSecret, { now: sentAt + 301 }), /s old/);
    await assert.rejects(verifyWebhook(hook.headers, hook.body, webhookSecret, { now: sentAt - 301 }), /in the future/);
    await verifyWebhook(hook.headers, hook.body, webhookSecret, { now: sentAt + 299 });
    await assert.rejects(verifyWebhook(hook.headers, hook.body, "whsec_b3RoZXI="), WebhookVerificationError);
    const { "webhook-signature": _, ...unsigned } = hook.headers;
    await assert.rejects(verifyWebhook(unsigned, hook.body, webhookSecret), /missing webhook-id/);
  });
});
