/** The gateway's error envelope ({"error": {code, message, type, param}}) as typed exceptions. */
export class ConchError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly details: unknown = null,
  ) {
    super(`${status} ${code}: ${message}`);
    this.name = new.target.name;
  }
}
export class ValidationError extends ConchError {}
export class UnauthorizedError extends ConchError {}
export class NotFoundError extends ConchError {}
export class RateLimitedError extends ConchError {}
export class OverloadedError extends ConchError {}

function kind(status: number, code: string): typeof ConchError {
  // The gateway answers an unknown model with 400 (a bad field); callers still want "not found".
  if (code === "MODEL_NOT_FOUND") return NotFoundError;
  if (status === 401 || status === 403) return UnauthorizedError;
  if (status === 404) return NotFoundError;
  if (status === 429) return RateLimitedError;
  if (status === 503 || status === 504) return OverloadedError;
  if (status >= 400 && status < 500) return ValidationError;
  return ConchError;
}

export function fromResponse(status: number, body: string): ConchError {
  try {
    const e = JSON.parse(body).error;
    if (e && typeof e.code === "string") return new (kind(status, e.code))(status, e.code, e.message, e.param ?? null, e.details ?? null);
  } catch {
    // not JSON: a proxy's page; keep its text
  }
  return new (kind(status, ""))(status, `HTTP_${status}`, body.slice(0, 500));
}

/** Back-off on 429/503: Retry-After (seconds) wins; capped so a server cannot hang a client. */
export function retryDelay(attempt: number, retryAfter: string | null, base = 500, cap = 30_000): number {
  const seconds = retryAfter === null ? NaN : Number(retryAfter);
  if (retryAfter !== null && retryAfter !== "" && Number.isFinite(seconds)) return Math.min(Math.max(seconds * 1000, 0), cap);
  return Math.min(base * 2 ** attempt, cap);
}
