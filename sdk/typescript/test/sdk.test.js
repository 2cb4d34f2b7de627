// Runs against a real gateway + Triton: tests/integration/test_typescript_sdk.py starts them and sets CONCH_URL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LLMInferenceClient, NotFoundError, ValidationError, fromResponse, retryDelay } from "../dist/index.js";

const baseURL = process.env.CONCH_URL;
const client = new LLMInferenceClient({ baseURL, apiToken: "unused-when-auth-is-off" });

test("retryDelay honours Retry-After, else backs off exponentially, capped", () => {
  assert.equal(retryDelay(0, "7"), 7000);
  assert.deepEqual([0, 1, 2].map((n) => retryDelay(n, null)), [500, 1000, 2000]);
  assert.equal(retryDelay(0, "3600"), 30000);
});

test("fromResponse keeps a non-envelope body", () => {
  const error = fromResponse(502, "<html>bad gateway</html>");
  assert.equal(error.code, "HTTP_502");
  assert.match(error.message, /bad gateway/);
});

test("seed 003 names: listModels and generate({modelId, prompt, maxTokens})", { skip: !baseURL }, async () => {
  const models = await client.listModels();
  assert.ok(models.map((m) => m.id).includes("smollm2"));
  const response = await client.generate({ modelId: "smollm2", prompt: "Hello, world!", maxTokens: 8, temperature: 0 });
  assert.ok(response.text.trim());
  assert.equal(response.model, "smollm2");
  assert.ok(response.usage.completion_tokens <= 8);
});

test("generateStream yields the same text as generate (greedy)", { skip: !baseURL }, async () => {
  const request = { modelId: "smollm2", prompt: "Count: one, two,", maxTokens: 6, temperature: 0 };
  const events = [];
  for await (const event of client.generateStream(request)) events.push(event);
  assert.equal(events.at(-1).finished, true);
  assert.equal(events.map((e) => e.token).join(""), (await client.generate(request)).text);
});

test("breaking out of a stream aborts it and the client keeps working", { skip: !baseURL }, async () => {
  for await (const event of client.generateStream({ modelId: "smollm2", prompt: "A long story:", maxTokens: 200 })) {
    assert.equal(typeof event.token, "string");
    break;
  }
  assert.ok((await client.generate({ modelId: "smollm2", prompt: "Hi", maxTokens: 2 })).model);
});

test("OpenAI chat completions, streamed and not", { skip: !baseURL }, async () => {
  const body = { model: "smollm2", messages: [{ role: "user", content: "Say hi" }], max_tokens: 4, temperature: 0 };
  const answer = await client.chatCompletions(body);
  let text = "";
  for await (const chunk of client.chatCompletionsStream(body)) text += chunk.choices?.[0]?.delta?.content ?? "";
  assert.equal(text, answer.choices[0].message.content);
});

test("the error envelope becomes typed errors", { skip: !baseURL }, async () => {
  await assert.rejects(client.generate({ modelId: "no-such-model", prompt: "hi", maxTokens: 4 }), (error) => {
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.code, "MODEL_NOT_FOUND");
    return true;
  });
  await assert.rejects(client.generate({ modelId: "smollm2", prompt: "hi", maxTokens: -1 }), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.match(error.param, /max_tokens/);
    return true;
  });
});

test("chat({model}) picks the session's model; later turns and chatStream keep it", { skip: !baseURL }, async () => {
  // `fault` (a test model in the real Triton) answers "ok" to ordinary text, so the reply says which model ran.
  const session = `ts-sdk-model-${process.pid}`;
  const other = `ts-sdk-default-${process.pid}`;
  await client.reset(session);
  await client.reset(other);
  const first = await client.chat("Hello!", { session, model: "fault", maxTokens: 4, temperature: 0 });
  assert.deepEqual([first.status, first.message, first.response.trim()], ["success", "Hello!", "ok"]);
  const again = await client.chat("And now?", { session, maxTokens: 4, temperature: 0 });
  assert.equal(again.response.trim(), "ok");
  let streamed = "";
  for await (const event of client.chatStream("Once more", { session, maxTokens: 4, temperature: 0 })) streamed += event.token;
  assert.equal(streamed.trim(), "ok");
  const status = await client.status(session);
  assert.equal(status.conversation_length, 6);
  await client.chat("Hello!", { session: other, maxTokens: 4, temperature: 0 });
  assert.notEqual((await client.status(other)).model_name, status.model_name);
  await client.reset(session);
  assert.equal((await client.status(session)).conversation_length, 0);
});
