/** Conch's TypeScript SDK: fetch-based (Node 18+ and browsers), streams as async iterators. */
import { EventSourceParserStream } from "eventsource-parser/stream";
import { fromResponse, retryDelay } from "./errors.js";

export * from "./errors.js";

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
export interface GenerateRequest {
  prompt: string; modelId?: string; maxTokens?: number; temperature?: number; topP?: number; stop?: string[]; seed?: number;
}
export interface ChatOptions { session?: string; maxTokens?: number; temperature?: number; model?: string }
export interface ChatReply { message: string; response: string; status: string }
export interface SessionStatus { model_name: string; device: string; conversation_length: number; memory_allocated: unknown }

const RETRYABLE = new Set([429, 503]);
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

  /** One HTTP call with retries on 429/503; throws the typed error for any other failure. */
  async raw(method: string, path: string, body?: unknown, extra: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const timeout = AbortSignal.timeout(this.timeoutMs);
      const response = await this.fetchImpl(this.baseURL + path, {
        method,
        headers: { ...this.headers, ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...extra },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
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

  async request<T>(method: string, path: string, body?: unknown, extra?: Record<string, string>): Promise<T> {
    const response = await this.raw(method, path, body, extra);
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
  async listModels(): Promise<Model[]> {
    return modelsOf(await this.request("GET", "/v1/models"));
  }
  async createModel(spec: { name: string; framework?: string; config?: Record<string, unknown>; [k: string]: unknown }): Promise<Model> {
    return modelsOf([await this.request("POST", "/api/models", spec)])[0];
  }
  getModel(id: string): Promise<Model> {
    return this.request("GET", `/api/models/${encodeURIComponent(id)}`);
  }
  deleteModel(id: string): Promise<unknown> {
    return this.request("DELETE", `/api/models/${encodeURIComponent(id)}`);
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
}

export { LLMInferenceClient as Client };
