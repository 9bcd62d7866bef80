// The client against a stack with API keys required (gateway and notifier, no worker: jobs stay
// queued), started by tests/client_js/test_js_client.py.
import assert from "node:assert/strict";
import { before, test } from "node:test";

import { AuthenticationError, Fluxgate, NotFoundError } from "../dist/index.js";
import { stackFromEnv } from "./support.js";

const gateway = stackFromEnv("FLUXGATE_TEST_AUTH_URL");
const notifierWs = stackFromEnv("FLUXGATE_TEST_AUTH_NOTIFIER_WS");
const adminToken = stackFromEnv("FLUXGATE_TEST_ADMIN_TOKEN");
const flux = { prompt: "a fox", width: 64, height: 64, num_inference_steps: 1 };
let token;
let otherToken;

async function newKey(name) {
  const answer = await fetch(`${gateway}/admin/keys`, {
    method: "POST",
    headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  assert.equal(answer.status, 201, await answer.clone().text());
  return (await answer.json()).token;
}

before(async () => {
  token = await newKey(`js-${Date.now()}`);
  otherToken = await newKey(`js-other-${Date.now()}`);
});

test("401: no key, or an unknown one, is an AuthenticationError", async () => {
  for (const apiKey of [null, "fg_not-a-key"]) {
    const client = new Fluxgate({ baseUrl: gateway, apiKey });
    await assert.rejects(client.flux(flux), (error) => {
      assert.ok(error instanceof AuthenticationError, String(error));
      assert.equal(error.statusCode, 401);
      assert.equal(error.code, "unauthorized");
      return true;
    });
  }
});

test("a refused key on the WebSocket (close 4401) is an AuthenticationError too", async () => {
  const { task_id: taskId } = await new Fluxgate({ baseUrl: gateway, apiKey: token }).flux(flux);
  const wrong = new Fluxgate({ baseUrl: gateway, apiKey: "fg_not-a-key", wsUrl: notifierWs });
  await assert.rejects(wrong.wait(taskId, { transport: "websocket", timeout: 10 }), AuthenticationError);
  await assert.rejects(wrong.wait(taskId, { transport: "sse", timeout: 10 }), AuthenticationError);
});

test("with its key: submit, follow over both transports, cancel", async () => {
  const client = new Fluxgate({ baseUrl: gateway, apiKey: token });
  const { task_id: taskId } = await client.flux(flux);
  for (const transport of ["websocket", "sse"]) {
    // No worker here: the job stays queued, and the snapshot says so.
    for await (const view of client.stream(taskId, { transport, timeout: 10 })) {
      assert.equal(view.event, "snapshot");
      assert.equal(view.status, "queued");
      break;
    }
  }
  assert.equal((await client.cancel(taskId)).status, "canceled");
  assert.equal((await client.wait(taskId, { timeout: 10 })).status, "canceled");
});

test("another key's task is not found, never shown", async () => {
  const { task_id: taskId } = await new Fluxgate({ baseUrl: gateway, apiKey: token }).flux(flux);
  const other = new Fluxgate({ baseUrl: gateway, apiKey: otherToken, wsUrl: notifierWs });
  await assert.rejects(other.get(taskId), NotFoundError);
  await assert.rejects(other.wait(taskId, { transport: "websocket", timeout: 10 }), NotFoundError);
});

test("the key goes only to the API's host: a WebSocket on another host named by a response gets none", async () => {
  const client = new Fluxgate({ baseUrl: gateway, apiKey: token });
  const { task_id: taskId } = await client.flux(flux);
  // The same gateway by another name: the server names its WebSocket on 127.0.0.1, which is
  // now another host than the client's, so the socket is opened without the key (4401).
  const elsewhere = new Fluxgate({ baseUrl: gateway.replace("127.0.0.1", "localhost"), apiKey: token });
  assert.equal((await elsewhere.get(taskId)).task_id, taskId);
  await assert.rejects(elsewhere.wait(taskId, { transport: "websocket", timeout: 10 }), AuthenticationError);
  await client.cancel(taskId);
});
