/** Conch's TypeScript SDK: fetch-based (Node 18+ and browsers), streams as async iterators. */
import { EventSourceParserStream } from "eventsource-parser/stream";
import { fromResponse, retryDelay } from "./errors.js";
import {
  actionBody, createBody, lines, logsPath, modelPath, updateBody, withQuery,
  type ActionOptions, type LogOptions, type ManagedModelsQuery, type ModelAction, type ModelSpec, type ModelStatus,
  type ModelUpdate,
} from "./management.js";

export * from "./errors.js";
export * from "./management.js";

export interface ClientOptions {
  baseURL?: string;
  apiKey?: string;
  /** Seed 003's spelling of apiKey. */
  apiToken?: string;
  timeoutMs?: number;
  maxRetries?: number;
  fetch?: typeof fetch;
}
export interface Usage { prompt_tokens: number; completion_tokens: number; total_tokens: number }
export interface GenerateResult { text: string; model: string; finish_reason: string; latency: number; usage: Usage | null }
export interface StreamEvent { token: string; finished: boolean; [key: string]: unknown }
export interface Model { id: string; status?: string; [key: string]: unknown }
/** One managed model (GET /api/models/{id}): status and health, the definition, and resource_version for updates. */
export interface ModelItem extends Model {
  name: string; display_name: string; description?: string | null; framework: string; status: ModelStatus;
  health: "healthy" | "unhealthy" | "unknown"; config: Record<string, unknown>; resource_usage: Record<string, unknown>;
  tags: string[]; priority?: number | null; resource_version?: string | null;
  created_at?: string | null; updated_at?: string | null;
}
/** A management change the gateway accepted (create, start, stop, restart); progress shows in getModel's status. */
export interface Accepted extends Model { name: string; status: string; message: string }
export interface GenerateRequest {
  prompt: string; modelId?: string; maxTokens?: number; temperature?: number; topP?: number; stop?: string[]; seed?: number;
}
export interface ChatOptions { session?: string; maxTokens?: number; temperature?: number; model?: string }
export interface ChatReply { message: string; response: string; status: string }
export interface SessionStatus { model_name: string; device: string; conversation_length: number; memory_allocated: unknown }

const RETRYABLE = new Set([429, 503]);
// A start/stop told to wait gets that long plus this to answer before the client gives up on it.
const WAIT_MARGIN_MS = 10_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function generateBody(r: GenerateRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { prompt: r.prompt, max_tokens: r.maxTokens ?? 512 };
  if (r.modelId) body.model = r.modelId;
  if (r.temperature !== undefined) body.temperature = r.temperature;
  if (r.topP !== undefined) body.top_p = r.topP;
  if (r.stop) body.stop = r.stop;
  if (r.seed !== undefined) body.seed = r.seed;
  return body;
}

function chatBody(message: string, options: ChatOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { message, max_tokens: options.maxTokens ?? 512, temperature: options.temperature ?? 0.7 };
  if (options.model !== undefined) body.model = options.model;
  return body;
}

function sessionHeader(session?: string): Record<string, string> {
  return session ? { "X-Session-Id": session } : {};
}

async function* chunksOf(reader: ReadableStreamDefaultReader<string>): AsyncGenerator<string> {
  // read() rather than `for await` over the stream: Safari's streams are not async iterable
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    yield value;
  }
}

function modelsOf(payload: any): Model[] {
  const items = Array.isArray(payload) ? payload : payload.data ?? payload.items ?? payload.models ?? [];
  return items.map((m: any) => ({ ...m, id: m.id ?? m.name }));
}

export class LLMInferenceClient {
  readonly baseURL: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions = {}) {
    this.baseURL = (options.baseURL ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
    const key = options.apiKey ?? options.apiToken;
    this.headers = key ? { Authorization: `Bearer ${key}` } : {};
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.maxRetries = options.maxRetries ?? 3;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** One HTTP call with retries on 429/503; throws the typed error for any other failure. `timeoutMs` null:
   * no limit (a followed log can be quiet for as long as it likes; `signal` ends it). */
  async raw(method: string, path: string, body?: unknown, extra: Record<string, string> = {}, signal?: AbortSignal,
            timeoutMs: number | null = this.timeoutMs): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const signals = [signal, timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs)]
        .filter((s): s is AbortSignal => s !== undefined);
      const response = await this.fetchImpl(this.baseURL + path, {
        method,
        headers: { ...this.headers, ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...extra },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signals.length ? AbortSignal.any(signals) : undefined,
      });
      if (RETRYABLE.has(response.status) && attempt < this.maxRetries) {
        await response.body?.cancel();
        await sleep(retryDelay(attempt, response.headers.get("Retry-After")));
        continue;
      }
      if (response.status >= 400) throw fromResponse(response.status, await response.text());
      return response;
    }
  }

  async request<T>(method: string, path: string, body?: unknown, extra?: Record<string, string>,
                   timeoutMs?: number): Promise<T> {
    const response = await this.raw(method, path, body, extra, undefined, timeoutMs);
    const text = await response.text();
    return (text ? JSON.parse(text) : null) as T;
  }

  /** SSE events as parsed JSON; leaving the loop early aborts the request (the gateway cancels it in Triton). */
  async *stream<T>(path: string, body: unknown, extra: Record<string, string> = {}): AsyncGenerator<T> {
    const abort = new AbortController();
    const response = await this.raw("POST", path, body, { Accept: "text/event-stream", ...extra }, abort.signal);
    const events = response.body!.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
    const reader = events.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || value.data === "[DONE]") return;
        yield JSON.parse(value.data) as T;
      }
    } finally {
      abort.abort();
      reader.releaseLock();
    }
  }

  generate(request: GenerateRequest): Promise<GenerateResult> {
    return this.request("POST", "/api/v1/generate", generateBody(request));
  }
  generateStream(request: GenerateRequest): AsyncGenerator<StreamEvent> {
    return this.stream("/api/v1/generate/stream", generateBody(request));
  }
  chatCompletions(body: Record<string, unknown>): Promise<any> {
    return this.request("POST", "/v1/chat/completions", body);
  }
  chatCompletionsStream(body: Record<string, unknown>): AsyncGenerator<any> {
    return this.stream("/v1/chat/completions", { ...body, stream: true });
  }
  completions(body: Record<string, unknown>): Promise<any> {
    return this.request("POST", "/v1/completions", body);
  }
  embeddings(input: string | string[], model?: string): Promise<any> {
    return this.request("POST", "/v1/embeddings", model ? { input, model } : { input });
  }
  /** Models served (/v1/models); `filters` go as query parameters. */
  async listModels(filters: Record<string, string | number | boolean> = {}): Promise<Model[]> {
    return modelsOf(await this.request("GET", withQuery("/v1/models", filters)));
  }

  // Management (seed 003's /api/models); changes need an admin key. Ids are sent as one path segment.
  /** Managed models, one page (the server's default page and size unless given), filtered by status/framework. */
  async managedModels(query: ManagedModelsQuery = {}): Promise<ModelItem[]> {
    return modelsOf(await this.request("GET", withQuery("/api/models", { ...query }))) as ModelItem[];
  }
  async createModel(spec: ModelSpec): Promise<Accepted> {
    return this.request("POST", "/api/models", createBody(spec));
  }
  async getModel(id: string): Promise<ModelItem> {
    return this.request("GET", modelPath(id));
  }
  /** Replaces the definition (PUT): pass every field to keep, and resource_version from getModel to be refused
   * (409 CONFLICT) if someone changed the model meanwhile. */
  async updateModel(id: string, body: ModelUpdate): Promise<ModelItem> {
    return this.request("PUT", modelPath(id), updateBody(id, body));
  }
  async deleteModel(id: string): Promise<void> {
    await this.request("DELETE", modelPath(id));
  }
  /** start | stop | restart; an unknown action is refused (RangeError) before anything is sent. */
  async modelAction(id: string, action: ModelAction, options: ActionOptions = {}): Promise<Accepted> {
    const body = actionBody(action, options);
    // the server holds the answer up to `timeout` seconds: the client waits that long too, and a little more
    const limit = body ? Math.max(this.timeoutMs, body.timeout * 1000 + WAIT_MARGIN_MS) : undefined;
    return this.request("POST", modelPath(id, `/${action}`), body, {}, limit);
  }
  startModel(id: string, options: ActionOptions = {}): Promise<Accepted> {
    return this.modelAction(id, "start", options);
  }
  stopModel(id: string, options: ActionOptions = {}): Promise<Accepted> {
    return this.modelAction(id, "stop", options);
  }
  restartModel(id: string): Promise<Accepted> {
    return this.modelAction(id, "restart");
  }
  /** The model's last `tail` log lines (the server's 100 unless given), or those of the last `sinceSeconds`, as text. */
  async modelLogs(id: string, options: LogOptions = {}): Promise<string> {
    return (await this.raw("GET", logsPath(id, options, false), undefined, {}, options.signal)).text();
  }
  /** Log lines (without line endings) as they are written, after the last `tail` (10) ones; no time limit.
   * Leaving the loop closes the connection, which ends the follow on the server; so does aborting `signal`. */
  async *followLogs(id: string, options: LogOptions = {}): AsyncGenerator<string> {
    const abort = new AbortController();
    const path = logsPath(id, { tail: 10, ...options }, true);
    const signal = options.signal ? AbortSignal.any([abort.signal, options.signal]) : abort.signal;
    const response = await this.raw("GET", path, undefined, { Accept: "text/plain" }, signal, null);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    try {
      yield* lines(chunksOf(reader));
    } finally {
      abort.abort();
      reader.releaseLock();
    }
  }
  /** Seed 002's sessions. `model` picks the session's model (its first message chooses; later turns keep it). */
  chat(message: string, options: ChatOptions = {}): Promise<ChatReply> {
    return this.request("POST", "/chat", chatBody(message, options), sessionHeader(options.session));
  }
  chatStream(message: string, options: ChatOptions = {}): AsyncGenerator<StreamEvent> {
    return this.stream("/chat", { ...chatBody(message, options), stream: true }, sessionHeader(options.session));
  }
  reset(session?: string): Promise<unknown> {
    return this.request("POST", "/reset", undefined, sessionHeader(session));
  }
  status(session?: string): Promise<SessionStatus> {
    return this.request("GET", "/status", undefined, sessionHeader(session));
  }
  token(username: string, password: string): Promise<{ access_token: string; [k: string]: unknown }> {
    return this.request("POST", "/api/auth/token", { username, password });
  }
  health(): Promise<Record<string, unknown>> {
    return this.request("GET", "/health");
  }
}

export { LLMInferenceClient as Client };
