// What the tests share: where the stack is (the pytest side passes it in the environment), a TCP
// proxy that can cut and refuse connections, a webhook receiver and polling with a deadline.
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";

export function stackFromEnv(name = "FLUXGATE_TEST_URL") {
  const url = process.env[name];
  assert.ok(url, `${name} is not set: these tests run from tests/client_js/test_js_client.py`);
  return url;
}

/** Polls `probe` until it returns something truthy, or fails after `timeoutMs`. */
export async function pollUntil(probe, { timeoutMs = 30_000, everyMs = 50, what = "a condition" } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** A TCP proxy to `target` ("host:port") on a free port: `cut()` destroys every open connection,
 * and while `refusing` is true new ones are closed at once, as a network outage would. */
export async function startProxy(target) {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const open = new Set();
  const proxy = { connections: 0, refused: 0, refusing: false, port: 0 };
  const server = net.createServer((client) => {
    if (proxy.refusing) {
      proxy.refused += 1;
      client.destroy();
      return;
    }
    proxy.connections += 1;
    const upstream = net.connect(port, host);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      open.add(a);
      a.on("error", () => b.destroy());
      a.on("close", () => {
        open.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.port = server.address().port;
  proxy.cut = () => {
    for (const socket of open) socket.destroy();
  };
  proxy.close = () => {
    proxy.cut();
    return new Promise((resolve) => server.close(resolve));
  };
  return proxy;
}

/** An HTTP server that keeps every request it is sent (headers and raw body). */
export async function startReceiver() {
  const received = [];
  const server = http.createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      received.push({ headers: request.headers, body: Buffer.concat(chunks) });
      response.writeHead(204).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    received,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
