// The management API: one route table served under /api/v4 (EMQX 4.4 envelope) and /api/v5
// (EMQX 5 semantics), Basic auth, and GET /metrics. Handlers return data or throw an ApiError;
// this module alone turns either into an HTTP reply for the version asked. Before any route: a
// browser's cross-site state change is refused (403), then credentials are checked (401 before
// 404, so routes cannot be listed without them), and failed logins are throttled per address (429).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { LoginThrottle } from '../broker/login-throttle.js';
import { ApiError, errorForms } from './errors.js';
import type { HttpReply, HttpRequestData } from './http.js';

export type ApiVersion = 'v4' | 'v5';

export interface ApiRequest {
  readonly version: ApiVersion;
  /** Path parameters (`:name` segments), percent-decoded. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** The JSON body, undefined when there is none. */
  readonly body: unknown;
}

export interface PageMeta {
  readonly page: number;
  readonly limit: number;
  readonly hasnext: boolean;
  readonly count: number;
}

/**
 * What a handler returns. `data`: v4 `{"code":0,"data":...}` (+ `meta`), v5 the data itself (or
 * `{data, meta}`); `raw`: the same body in both (EMQX 4.4 status objects); `done`: v4 `{"code":0}`,
 * v5 204 No Content.
 */
export type ApiResult = { readonly kind: 'data'; readonly data: unknown; readonly meta?: PageMeta } | { readonly kind: 'raw'; readonly body: unknown } | { readonly kind: 'done' };

export const ok = (data: unknown, meta?: PageMeta): ApiResult => (meta === undefined ? { kind: 'data', data } : { kind: 'data', data, meta });
export const raw = (body: unknown): ApiResult => ({ kind: 'raw', body });
export const done = (): ApiResult => ({ kind: 'done' });

export interface Route {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** After the version prefix, e.g. `/clients/:clientid`. */
  readonly path: string;
  /** No credentials needed (given ones are accepted): the load balancers' availability check. */
  readonly public?: boolean;
  handler(req: ApiRequest): ApiResult | Promise<ApiResult>;
}

export interface ApiOptions {
  readonly username: string;
  readonly password: string;
  /** Whether GET /metrics needs the credentials too (management.metrics_auth; default false). */
  readonly metricsAuth: boolean;
  /** Failed logins per source address (management.max_failed_logins). */
  readonly loginThrottle: LoginThrottle;
  /** The Prometheus exposition for GET /metrics. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** An address just reached the failed-login limit (for a log line). */
  onThrottled(address: string): void;
  /** Unexpected handler errors are logged here and answered 500. */
  onError(err: unknown, req: HttpRequestData): void;
}

const JSON_HEADERS = { 'Content-Type': 'application/json' } as const;
const PREFIX = /^\/api\/(v4|v5)(\/.*)$/;
/** RFC 7617: the scheme (any case), one or more spaces, base64 and nothing after it. */
const BASIC = /^Basic +((?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)$/i;
const STATE_CHANGING = new Set(['POST', 'PUT', 'DELETE', 'PATCH']);

interface CompiledRoute {
  readonly route: Route;
  /** Literal segment, or a parameter name prefixed by ':'. */
  readonly segments: readonly string[];
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class AdminApi {
  private readonly routes: CompiledRoute[];
  private readonly credentials: Buffer;

  constructor(
    routes: readonly Route[],
    private readonly options: ApiOptions,
  ) {
    this.routes = routes.map((route) => ({ route, segments: route.path.split('/').slice(1) }));
    this.credentials = digest(`${options.username}:${options.password}`);
  }

  async handle(req: HttpRequestData): Promise<HttpReply> {
    if (req.path === '/metrics') return this.metrics(req);
    const m = PREFIX.exec(req.path);
    // Unknown paths answer like the v5 API: a JSON 404.
    const version: ApiVersion = m?.[1] === 'v4' ? 'v4' : 'v5';
    try {
      if (crossSite(req)) throw new ApiError('forbidden', `cross-site ${req.method} refused: the management API takes state changes from scripts and same-origin pages only`);
      const found = m === null ? undefined : this.match(req.method, m[2] as string);
      if (found?.[0].public !== true) this.authenticate(req);
      if (found === undefined) throw new ApiError('not_found', `no such API: ${req.method} ${req.path}`);
      const [route, params] = found;
      const body = parseBody(req.body);
      const result = await route.handler({ version, params, query: new URLSearchParams(req.query), body });
      return render(version, result);
    } catch (err) {
      if (err instanceof ApiError) return renderError(version, err);
      this.options.onError(err, req);
      return renderError(version, new ApiError('internal', 'internal error'));
    }
  }

  private async metrics(req: HttpRequestData): Promise<HttpReply> {
    try {
      if (req.method !== 'GET') throw new ApiError('not_found', `no such API: ${req.method} ${req.path}`);
      if (this.options.metricsAuth) this.authenticate(req);
    } catch (err) {
      return renderError('v5', err as ApiError);
    }
    const { contentType, text } = await this.options.metrics();
    return { status: 200, headers: { 'Content-Type': contentType }, body: text };
  }

  /** Throws unless the request carries the credentials; a wrong Authorization header counts against its address. */
  private authenticate(req: HttpRequestData): void {
    const throttle = this.options.loginThrottle;
    const now = Date.now();
    // Before the check: a throttled guesser must not learn that a guess was right.
    if (throttle.blocked(req.remoteAddress, now)) {
      const seconds = Math.ceil(throttle.retryAfter(req.remoteAddress, now) / 1000);
      throw new ApiError('too_many_requests', `too many failed logins from ${req.remoteAddress}: retry in ${seconds} s`, seconds);
    }
    const m = BASIC.exec(req.authorization);
    // Compared as digests: equal lengths, and no timing hint about the secret.
    if (m !== null && timingSafeEqual(digest(Buffer.from(m[1] as string, 'base64').toString('utf8')), this.credentials)) return;
    // A request without credentials is a browser's first try, not a guess.
    if (req.authorization !== '' && throttle.fail(req.remoteAddress, now)) this.options.onThrottled(req.remoteAddress);
    throw new ApiError('unauthorized', 'Check username/password');
  }

  private match(method: string, path: string): [Route, Record<string, string>] | undefined {
    const parts = path.split('/').slice(1);
    if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop(); // a trailing slash
    for (const { route, segments } of this.routes) {
      if (route.method !== method || segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let matched = true;
      for (let i = 0; i < segments.length && matched; i++) {
        const seg = segments[i] as string;
        const part = parts[i] as string;
        if (seg.startsWith(':')) params[seg.slice(1)] = decodeSegment(part);
        else matched = seg === part;
      }
      if (matched) return [route, params];
    }
    return undefined;
  }
}

/**
 * A state change a browser sent from another site (a page with cached Basic credentials): its
 * Origin is not this server's own, or it says so in Sec-Fetch-Site. Scripts, curl, HAProxy and
 * our CLI send neither header, whatever their Content-Type.
 */
function crossSite(req: HttpRequestData): boolean {
  if (!STATE_CHANGING.has(req.method)) return false;
  if (req.fetchSite === 'cross-site') return true;
  if (req.origin === '') return false;
  try {
    return new URL(req.origin).host !== req.host;
  } catch {
    return true; // `null` (a sandboxed page, a file) or garbage: not ours
  }
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ApiError('bad_request', `bad percent-encoding in the path: ${s}`);
  }
}

function parseBody(body: Buffer | null): unknown {
  if (body === null) throw new ApiError('payload_too_large', 'request body too large');
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new ApiError('bad_request', 'request body is not valid JSON');
  }
}

function json(status: number, body: unknown): HttpReply {
  return { status, headers: JSON_HEADERS, body: JSON.stringify(body) };
}

function render(version: ApiVersion, result: ApiResult): HttpReply {
  switch (result.kind) {
    case 'raw':
      return json(200, result.body);
    case 'done':
      return version === 'v4' ? json(200, { code: 0 }) : { status: 204, body: '' };
    case 'data':
      if (version === 'v4') return json(200, result.meta === undefined ? { code: 0, data: result.data } : { code: 0, data: result.data, meta: result.meta });
      return json(200, result.meta === undefined ? result.data : { data: result.data, meta: result.meta });
  }
}

function renderError(version: ApiVersion, err: ApiError): HttpReply {
  const forms = errorForms(err);
  const { status, body } = version === 'v4' ? forms.v4 : forms.v5;
  if (status === 401) return { ...json(status, body), headers: { ...JSON_HEADERS, 'WWW-Authenticate': 'Basic realm="tidemq"' } };
  if (err.retryAfter !== undefined) return { ...json(status, body), headers: { ...JSON_HEADERS, 'Retry-After': String(err.retryAfter) } };
  return json(status, body);
}

/** Largest page EMQX serves (its max_row_limit); bigger `_limit`s are cut to it. */
const MAX_LIMIT = 10_000;

/**
 * One page of `total` items, EMQX style: `_page`/`_limit` (v4) or `page`/`limit` (v5, both
 * accepted in either). Default limit: 10000 in v4, 100 in v5. `take(skip, limit)` yields the items.
 */
export function page<T>(req: ApiRequest, total: number, take: (skip: number, limit: number) => T[]): ApiResult {
  const pageNo = positiveInt(req.query, ['_page', 'page'], 1);
  const limit = Math.min(positiveInt(req.query, ['_limit', 'limit'], req.version === 'v4' ? MAX_LIMIT : 100), MAX_LIMIT);
  const skip = (pageNo - 1) * limit;
  const data = skip >= total ? [] : take(skip, limit);
  return ok(data, { page: pageNo, limit, hasnext: skip + data.length < total, count: total });
}

function positiveInt(query: URLSearchParams, names: readonly string[], fallback: number): number {
  for (const name of names) {
    const v = query.get(name);
    if (v === null) continue;
    if (!/^[1-9][0-9]{0,8}$/.test(v)) throw new ApiError('bad_request', `invalid ${name}: ${v}`);
    return Number(v);
  }
  return fallback;
}
