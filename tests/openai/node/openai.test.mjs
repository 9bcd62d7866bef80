// The official `openai` npm package, unchanged, against Fluxgate's /v1 routes through nginx.
// tests/openai/test_node_sdk.py runs it with FLUXGATE_OPENAI_BASE_URL and FLUXGATE_OPENAI_KEY.
import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateSync } from "node:zlib";

import OpenAI, { toFile } from "openai";

const baseURL = process.env.FLUXGATE_OPENAI_BASE_URL;
const apiKey = process.env.FLUXGATE_OPENAI_KEY;
// No retries: each test sees the server's own answer.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

// A PNG's width and height, from its IHDR chunk.
function pngSize(bytes) {
  assert.equal(bytes.subarray(1, 4).toString("latin1"), "PNG");
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

function crc32(bytes) {
  let crc = ~0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit += 1) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}

// A plain RGB PNG of the given size, made here (no image library).
function png(width, height) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(width * 3, 120)]);
  const pixels = deflateSync(Buffer.concat(Array(height).fill(row)));
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, chunk("IHDR", header), chunk("IDAT", pixels), chunk("IEND", Buffer.alloc(0))]);
}

test("generations answer URLs of the finished images", async () => {
  const answer = await client.images.generate({
    model: "flux",
    prompt: "a red fox",
    n: 2,
    size: "64x64",
    response_format: "url",
  });
  assert.equal(answer.data.length, 2);
  for (const image of answer.data) {
    const fetched = await fetch(image.url);
    assert.equal(fetched.status, 200);
    assert.deepEqual(pngSize(Buffer.from(await fetched.arrayBuffer())), [64, 64]);
  }
});

test("b64_json carries the images", async () => {
  const answer = await client.images.generate({
    prompt: "a blue fox",
    size: "128x64",
    response_format: "b64_json",
  });
  assert.deepEqual(pngSize(Buffer.from(answer.data[0].b64_json, "base64")), [128, 64]);
});

test("edits take a multipart image", async () => {
  const answer = await client.images.edit({
    image: await toFile(png(256, 128), "photo.png", { type: "image/png" }),
    prompt: "an oil painting",
    size: "128x128",
    response_format: "b64_json",
  });
  assert.deepEqual(pngSize(Buffer.from(answer.data[0].b64_json, "base64")), [128, 64]);
});

test("models list what the deployment serves", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.ok(ids.includes("flux"), ids.join(","));
});

test("a bad size is a BadRequestError naming size", async () => {
  await assert.rejects(
    client.images.generate({ prompt: "a fox", size: "100x100" }),
    (error) => error instanceof OpenAI.BadRequestError && error.param === "size",
  );
});

test("a bad key is an AuthenticationError", async () => {
  const stranger = new OpenAI({ baseURL, apiKey: "fg_not-a-key", maxRetries: 0 });
  await assert.rejects(
    stranger.images.generate({ prompt: "a fox", size: "64x64" }),
    (error) => error instanceof OpenAI.AuthenticationError && error.status === 401,
  );
});
