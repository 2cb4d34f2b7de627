// The management calls against seed 003's API of a real local gateway (authentication on) over a real Triton in
// explicit model-control mode: tests/integration/test_typescript_sdk_management.py starts that stack, passes it in
// the environment below and checks that every test here ran and passed. The tests run in order and share one
// model, created by the first and deleted by the last.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConchError, LLMInferenceClient, NotFoundError, OverloadedError, UnauthorizedError, ValidationError,
} from "../dist/index.js";

const env = process.env;
const baseURL = env.CONCH_MANAGEMENT_URL;
const ID = `ts-made-${process.pid}`;
const config = { model_path: env.CONCH_GGUF, n_ctx: 512, n_threads: 1 };

function clientFor(apiToken, options = {}) {
  // no retries: every refusal the gateway sends must reach the test as the error it is
  return new LLMInferenceClient({ baseURL, apiToken, maxRetries: 0, ...options });
}

/** A client that counts the requests it sends, to show a refusal happened before any. */
function countingClient(apiToken) {
  const sent = [];
  const client = clientFor(apiToken, { fetch: (url, init) => { sent.push(url); return fetch(url, init); } });
  return { client, sent };
}

async function waitStatus(client, id, status, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const item = await client.getModel(id);
    if (item.status === status) return item;
    assert.ok(Date.now() < deadline, `${id} is ${item.status}, not ${status}, after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// `node --test test/` alone (test_typescript_sdk.py, whose gateway has no management API) sets none of the
// environment, so nothing is registered there; the pytest file that does set it counts the tests that pass.
if (baseURL) {
  const admin = clientFor(env.CONCH_ADMIN_KEY);
  const user = clientFor(env.CONCH_USER_KEY);

  test("seed 003 walkthrough: listModels, createModel (llama.cpp by default), generate, managedModels", async () => {
    assert.ok((await admin.listModels()).map((m) => m.id).includes("smollm2"));
    const created = await admin.createModel({ name: ID, config, tags: ["ts"] });
    assert.deepEqual([created.id, created.status], [ID, "created"]);
    await waitStatus(admin, ID, "running");
    const response = await admin.generate({ modelId: ID, prompt: "Hello, world!", maxTokens: 8, temperature: 0 });
    assert.equal(response.model, ID);
    assert.ok(response.text.trim() && response.usage.completion_tokens <= 8);

    const running = await admin.managedModels({ status: "running", framework: "llama.cpp" });
    assert.ok(running.map((m) => m.id).includes(ID));
    assert.ok(running.every((m) => m.status === "running" && m.framework === "llama.cpp"));
    assert.deepEqual((await admin.managedModels({ status: "stopped" })).map((m) => m.id), []);
    const firstPage = await admin.managedModels({ page: 1, size: 1 });
    const secondPage = await admin.managedModels({ page: 2, size: 1 });
    assert.equal(firstPage.length, 1);
    assert.equal(secondPage.length, 1);
    assert.notEqual(firstPage[0].id, secondPage[0].id);
  });

  test("getModel, then updateModel replaces the definition; a stale resource_version is 409 CONFLICT", async () => {
    const item = await admin.getModel(ID);
    assert.deepEqual([item.status, item.health, item.framework, item.tags, item.config.n_ctx],
      ["running", "healthy", "llama.cpp", ["ts"], 512]);
    assert.ok(item.resource_version);
    const updated = await admin.updateModel(ID, { config, description: "v2", resource_version: item.resource_version });
    assert.deepEqual([updated.id, updated.description, updated.tags], [ID, "v2", []]); // PUT does not merge
    await assert.rejects(admin.updateModel(ID, { config, resource_version: item.resource_version }), (error) => {
      assert.ok(error instanceof ConchError);
      assert.deepEqual([error.status, error.code], [409, "CONFLICT"]);
      return true;
    });
    assert.equal((await admin.getModel(ID)).description, "v2");
  });

  test("stopModel and startModel wait for the change; restartModel; a stopped model cannot serve or restart", async () => {
    assert.equal((await admin.stopModel(ID, { timeoutSeconds: 60 })).status, "stopping");
    assert.equal((await admin.getModel(ID)).status, "stopped");
    await assert.rejects(admin.restartModel(ID), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.code, "MODEL_NOT_RUNNING");
      return true;
    });
    await assert.rejects(admin.generate({ modelId: ID, prompt: "Hi", maxTokens: 2 }), (error) => {
      assert.ok(error instanceof OverloadedError); // Triton has unloaded it: 503
      assert.equal(error.status, 503);
      return true;
    });
    // The client's own limit is far below the load; a start told to wait gets the server's wait instead.
    const impatient = clientFor(env.CONCH_ADMIN_KEY, { timeoutMs: 50 });
    const began = Date.now();
    assert.equal((await impatient.startModel(ID, { timeoutSeconds: 120 })).status, "starting");
    assert.ok(Date.now() - began > 50, "the load took longer than the client's own limit");
    assert.equal((await admin.getModel(ID)).status, "running");
    const restarted = await admin.modelAction(ID, "restart");
    assert.deepEqual([restarted.id, restarted.status], [ID, "restarting"]);
    await waitStatus(admin, ID, "running");
  });

  test("modelLogs returns the tail as text; followLogs yields lines written after it began, until left", async () => {
    const tail = await admin.modelLogs(ID, { tail: 3 });
    const count = tail.split("\n").filter(Boolean).length;
    assert.ok(count > 0 && count <= 3, tail);
    await assert.rejects(admin.modelLogs(ID, { tail: -1 }), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.param ?? "", /tail/);
      return true;
    });

    // A hung follow would keep Node (and the pytest waiting for it) running: the signal ends it whatever happens.
    const giveUp = new AbortController();
    const timer = setTimeout(() => giveUp.abort(new Error("no reload line within 60 s")), 60_000);
    try {
      const follow = admin.followLogs(ID, { tail: 1, signal: giveUp.signal });
      const last = await follow.next(); // the log's last line: the server has read to the end and now waits
      assert.ok(!last.done && last.value.trim());
      // Triton logs the unload and the load (a restart of an unchanged model is a no-op it does not log)
      await admin.stopModel(ID, { timeoutSeconds: 60 });
      await admin.startModel(ID, { timeoutSeconds: 120 });
      let reloaded;
      for await (const line of follow) {
        if (line.includes(`successfully loaded '${ID}'`)) {
          reloaded = line;
          break; // closes the connection
        }
      }
      assert.ok(reloaded && !reloaded.endsWith("\r"), reloaded);
      assert.deepEqual(await follow.next(), { done: true, value: undefined });
    } finally {
      clearTimeout(timer);
      giveUp.abort();
    }

    // Nothing is written now: aborting the signal ends the wait for a line that is not coming.
    const quiet = new AbortController();
    const waiting = admin.followLogs(ID, { tail: 0, signal: quiet.signal }).next();
    setTimeout(() => quiet.abort(new Error("enough")), 300);
    await assert.rejects(waiting, /enough/);
    assert.equal((await admin.getModel(ID)).status, "running");
  });

  test("typed errors: roles, a bad body, a missing model; a bad action or id is refused before sending", async () => {
    assert.equal((await user.getModel(ID)).id, ID); // a user may read
    for (const call of [() => user.createModel({ name: "not-mine", config }), () => user.stopModel("smollm2")]) {
      await assert.rejects(call(), (error) => {
        assert.ok(error instanceof UnauthorizedError);
        assert.deepEqual([error.status, error.code], [403, "AUTHORIZATION_FAILED"]);
        return true;
      });
    }
    await assert.rejects(clientFor(undefined).getModel(ID), (error) => {
      assert.ok(error instanceof UnauthorizedError);
      assert.deepEqual([error.status, error.code], [401, "AUTHENTICATION_FAILED"]);
      return true;
    });
    await assert.rejects(admin.createModel({ name: "bad", framework: "onnx", config }), (error) => {
      assert.ok(error instanceof ValidationError);
      assert.deepEqual([error.code, error.param], ["INVALID_MODEL_CONFIG", "framework"]);
      return true;
    });
    await assert.rejects(admin.createModel({ name: ID, config }), (error) => {
      assert.deepEqual([error.status, error.code], [409, "MODEL_ALREADY_EXISTS"]);
      return true;
    });
    for (const call of [() => admin.getModel("nope"), () => admin.followLogs("nope").next()]) {
      await assert.rejects(call(), (error) => {
        assert.ok(error instanceof NotFoundError);
        assert.deepEqual([error.status, error.code], [404, "MODEL_NOT_FOUND"]);
        return true;
      });
    }
    // the id is one path segment, never another route
    await assert.rejects(admin.stopModel("a/../smollm2"), NotFoundError);
    const { client, sent } = countingClient(env.CONCH_ADMIN_KEY);
    await assert.rejects(client.modelAction("smollm2", "explode"), RangeError);
    await assert.rejects(client.getModel(".."), RangeError);
    await assert.rejects(client.followLogs("").next(), RangeError);
    assert.deepEqual(sent, []);
    assert.equal((await admin.getModel("smollm2")).status, "running");
  });

  test("token() turns a username and password into a bearer token the client can use", async () => {
    const { access_token } = await clientFor(undefined).token(env.CONCH_USERNAME, env.CONCH_PASSWORD);
    assert.equal((await clientFor(access_token).getModel(ID)).id, ID);
    await assert.rejects(clientFor(undefined).token(env.CONCH_USERNAME, "wrong"), UnauthorizedError);
  });

  test("deleteModel removes it; the next get or delete is 404", async () => {
    assert.equal(await admin.deleteModel(ID), undefined);
    await assert.rejects(admin.getModel(ID), NotFoundError);
    await assert.rejects(admin.deleteModel(ID), NotFoundError);
    assert.ok(!(await admin.listModels()).map((m) => m.id).includes(ID));
  });
}
