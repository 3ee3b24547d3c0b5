// Management errors have one exit (DESIGN 7): a handler throws an ApiError of a kind, and
// errorForms() maps it, from one table, to the /api/v4 envelope, the /api/v5 status and body, and
// the line `tidemq ctl` prints.

interface ErrorKind {
  /** v4: HTTP status (EMQX 4.4 answers most errors with 200 and a code in the body). */
  readonly v4Status: number;
  /** v4 body `code`; null: an empty `{}` body (the availability check, as EMQX 4.4). */
  readonly v4Code: number | null;
  /** v4 body `message` when EMQX 4.4 has its own; else the error's message. */
  readonly v4Message?: string;
  /** v5: HTTP status and body `code`, as EMQX 5. */
  readonly status: number;
  readonly code: string;
  /** What `tidemq ctl` prints; null: the message itself. */
  readonly cli: string | null;
}

const KINDS = {
  bad_request: { v4Status: 200, v4Code: 400, status: 400, code: 'BAD_REQUEST', cli: null },
  /** Unknown path, or a node name that is not a member. */
  not_found: { v4Status: 404, v4Code: 404, status: 404, code: 'NOT_FOUND', cli: null },
  // EMQX 4.4 kickout: minirest:return({error, ?ERROR12, not_found}) -> {"code":112,"message":"not_found"}.
  client_not_found: { v4Status: 200, v4Code: 112, v4Message: 'not_found', status: 404, code: 'CLIENTID_NOT_FOUND', cli: 'Not Found.' },
  unauthorized: { v4Status: 401, v4Code: 401, status: 401, code: 'BAD_USERNAME_OR_PWD', cli: 'wrong credentials' },
  /** A state-changing request a browser marks as cross-site (Origin, Sec-Fetch-Site). */
  forbidden: { v4Status: 403, v4Code: 403, status: 403, code: 'FORBIDDEN', cli: null },
  /** Too many failed logins from this address (management.max_failed_logins). */
  too_many_requests: { v4Status: 429, v4Code: 429, status: 429, code: 'TOO_MANY_REQUESTS', cli: null },
  payload_too_large: { v4Status: 413, v4Code: 413, status: 413, code: 'PAYLOAD_TOO_LARGE', cli: null },
  // The availability check while evacuating or a rebalance donor (SPEC 8).
  node_evacuating: { v4Status: 503, v4Code: null, status: 503, code: 'NODE_EVACUATING', cli: null },
  /** A start/stop naming a node that is not a cluster member: v4 keeps its 200 envelope. */
  invalid_node: { v4Status: 200, v4Code: 400, status: 404, code: 'NOT_FOUND', cli: null },
  /** An RPC to another node failed or timed out. */
  unavailable: { v4Status: 200, v4Code: 400, status: 503, code: 'SERVICE_UNAVAILABLE', cli: null },
  internal: { v4Status: 500, v4Code: 102, status: 500, code: 'INTERNAL_ERROR', cli: null },
} as const satisfies Record<string, ErrorKind>;

export type ApiErrorKind = keyof typeof KINDS;

/** Thrown by route handlers; the server renders it for the API version asked. */
export class ApiError extends Error {
  constructor(
    readonly kind: ApiErrorKind,
    message: string,
    /** Seconds for a Retry-After header (too_many_requests). */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface ErrorForms {
  readonly v4: { readonly status: number; readonly body: Record<string, unknown> };
  readonly v5: { readonly status: number; readonly body: Record<string, unknown> };
  readonly cli: string;
}

/** The one mapping of a management error to what each interface shows. */
export function errorForms(err: ApiError): ErrorForms {
  const k: ErrorKind = KINDS[err.kind];
  return {
    v4: { status: k.v4Status, body: k.v4Code === null ? {} : { code: k.v4Code, message: k.v4Message ?? err.message } },
    v5: { status: k.status, body: { code: k.code, message: err.message } },
    cli: k.cli ?? err.message,
  };
}

/** The error a v5 response stands for (the CLI reads v5), or undefined for an unknown code. */
export function fromV5(code: unknown, message: string): ApiError | undefined {
  for (const [kind, k] of Object.entries(KINDS)) {
    if (k.code === code) return new ApiError(kind as ApiErrorKind, message);
  }
  return undefined;
}
