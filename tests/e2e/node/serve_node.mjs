// The official OpenAI Node SDK (the `openai` package pinned in package.json, installed by
// scripts/setup.sh) as a client of a running `hp serve`: models.list(), a completion whose text
// and prompt token count are hp generate's (same model, tokenizer and greedy decoding), a chat
// completion, a streamed chat completion whose deltas add up to the same request unstreamed, and
// error statuses surfacing as the SDK's APIError subclasses.
// Usage: node serve_node.mjs PORT MODEL_NAME EXPECTED.json   (EXPECTED: hp generate --json's record)
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [port, model, expectedFile] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const client = new OpenAI({
  baseURL: `http://127.0.0.1:${port}/v1`,
  apiKey: "unused",
  maxRetries: 0,
  timeout: 60_000,
});

const models = [];
for await (const m of client.models.list()) models.push(m);
assert.deepEqual(models.map((m) => m.id), [model], "models.list()");
assert.equal(models[0].object, "model");

const prompt = readFileSync(expectedFile + ".prompt", "utf8");
const completion = await client.completions.create({
  model,
  prompt,
  max_tokens: expected.tokens.length,
  temperature: 0,
});
assert.equal(completion.object, "text_completion");
assert.equal(completion.choices[0].text, expected.text, "completion text vs hp generate");
assert.equal(completion.usage.prompt_tokens, expected.prompt_tokens, "prompt tokens");
assert.equal(completion.usage.completion_tokens, expected.tokens.length);
assert.equal(completion.choices[0].finish_reason, "length");

const messages = [{ role: "user", content: "the theme of the day" }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(typeof chat.choices[0].message.content, "string");
assert.ok(["length", "stop"].includes(chat.choices[0].finish_reason), chat.choices[0].finish_reason);

const stream = await client.chat.completions.create({
  model,
  messages,
  max_tokens: 12,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let chunks = 0;
let finish = null;
let usage = null;
for await (const chunk of stream) {
  assert.equal(chunk.object, "chat.completion.chunk");
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    streamed += c.delta.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
  ++chunks;
}
assert.equal(streamed, chat.choices[0].message.content, "streamed chat vs unstreamed");
assert.equal(finish, chat.choices[0].finish_reason);
assert.ok(chunks >= 2, `${chunks} chunks`);
assert.equal(usage?.completion_tokens, chat.usage.completion_tokens);

// Errors: the SDK's classes and statuses, the server's OpenAI error body.
async function rejects(call, cls, status, code) {
  try {
    await call();
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, `not an APIError: ${e}`);
    assert.ok(e instanceof cls, `${e.constructor.name} is not ${cls.name}`);
    assert.equal(e.status, status);
    assert.equal(e.code, code);
    return;
  }
  assert.fail(`expected ${cls.name}`);
}
await rejects(
  () => client.completions.create({ model: "no-such-model", prompt: "a", max_tokens: 1 }),
  OpenAI.NotFoundError, 404, "model_not_found");
await rejects(
  () => client.completions.create({ model, prompt: "a", max_tokens: 1_000_000 }),
  OpenAI.BadRequestError, 400, "context_length_exceeded");
const sdk = JSON.parse(readFileSync(new URL("./node_modules/openai/package.json", import.meta.url)));
console.log(`serve_node: ok (openai ${sdk.version}, ${chunks} stream chunks)`);
