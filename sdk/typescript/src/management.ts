/** Seed 003's management API (/api/models) as types and pure request builders: paths, bodies, queries.
 * Mirrors sdk/python/conch_client/calls.py so the two SDKs name and send the same things. */

export type ModelStatus = "running" | "starting" | "stopped" | "error";
export type ModelAction = "start" | "stop" | "restart";
export const MODEL_ACTIONS: readonly ModelAction[] = ["start", "stop", "restart"];

export interface ModelConfig { model_path?: string; n_ctx?: number; n_threads?: number; n_gpu_layers?: number }
export interface ResourceRequirements { gpu_count?: number; gpu_memory?: number; cpu_cores?: number }
/** The create body (POST /api/models). `framework` defaults to llama.cpp, the one runtime a laptop serves. */
export interface ModelSpec {
  name: string;
  framework?: string;
  display_name?: string;
  description?: string;
  priority?: number;
  config?: ModelConfig;
  resource_requirements?: ResourceRequirements;
  tags?: string[];
}
/** The PUT body: a whole definition (PUT replaces, it does not merge) plus `resource_version` from getModel,
 * refused with 409 CONFLICT when someone changed the model meanwhile. `name` defaults to the id. */
export interface ModelUpdate extends Partial<ModelSpec> { resource_version?: string | null }
export interface ManagedModelsQuery { page?: number; size?: number; status?: ModelStatus; framework?: string }
export interface ActionOptions {
  /** Seconds the server waits for the change before answering (504 OPERATION_TIMEOUT if it has not happened,
   * though it goes on). Not sent for restart, which the server does not wait for. */
  timeoutSeconds?: number;
}
export interface LogOptions {
  tail?: number;
  sinceSeconds?: number;
  /** Aborting it stops the call: for followLogs, a pending next() rejects with the signal's reason (a quiet log
   * otherwise keeps it waiting, and `break` cannot run until a line comes). */
  signal?: AbortSignal;
}

type Query = Record<string, string | number | boolean | undefined | null>;

/** `path?k=v…` with the given (not undefined/null) values; nothing appended when none are. */
export function withQuery(path: string, query: Query = {}): string {
  const given = Object.entries(query).filter(([, v]) => v !== undefined && v !== null);
  return given.length ? `${path}?${new URLSearchParams(given.map(([k, v]) => [k, String(v)]))}` : path;
}

/** The id as one path segment. "", "." and ".." cannot be one (URL parsers resolve them, %2E-encoded too,
 * into another route), so they are refused before anything is sent. */
export function modelPath(id: string, suffix = ""): string {
  if (id === "" || id === "." || id === "..") throw new RangeError(`not a model id: ${JSON.stringify(id)}`);
  return `/api/models/${encodeURIComponent(id)}${suffix}`;
}

export function createBody(spec: ModelSpec): ModelSpec {
  return { ...spec, framework: spec.framework ?? "llama.cpp" };
}

export function updateBody(id: string, body: ModelUpdate): ModelUpdate {
  return { ...body, name: body.name ?? id, framework: body.framework ?? "llama.cpp" };
}

export function actionBody(action: ModelAction, options: ActionOptions): { timeout: number } | undefined {
  if (!MODEL_ACTIONS.includes(action)) {
    throw new RangeError(`action is one of ${MODEL_ACTIONS.join(", ")}, not ${JSON.stringify(action)}`);
  }
  return options.timeoutSeconds !== undefined && action !== "restart" ? { timeout: options.timeoutSeconds } : undefined;
}

export function logsPath(id: string, options: LogOptions, follow: boolean): string {
  return withQuery(modelPath(id, "/logs"), { tail: options.tail, since: options.sinceSeconds, follow: follow || undefined });
}

/** Lines of a text stream, without their line endings; the last one even when it has no newline. */
export async function* lines(chunks: AsyncIterable<string>): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of chunks) {
    pending += chunk;
    for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
      yield pending.slice(0, end).replace(/\r$/, "");
      pending = pending.slice(end + 1);
    }
  }
  if (pending) yield pending.replace(/\r$/, "");
}
