// The management API: one route table served under /api/v4 (EMQX 4.4 envelope) and /api/v5
// (EMQX 5 semantics), Basic auth, and GET /metrics. Handlers return data or throw an ApiError;
// this module alone turns either into an HTTP reply for the version asked.
import { createHash, timingSafeEqual } from 'node:crypto';
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
  /** The Prometheus exposition for GET /metrics. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Unexpected handler errors are logged here and answered 500. */
  onError(err: unknown, req: HttpRequestData): void;
}

const JSON_HEADERS = { 'Content-Type': 'application/json' } as const;
const PREFIX = /^\/api\/(v4|v5)(\/.*)$/;

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
      const found = m === null ? undefined : this.match(req.method, m[2] as string);
      if (found === undefined) throw new ApiError('not_found', `no such API: ${req.method} ${req.path}`);
      const [route, params] = found;
      if (route.public !== true && !this.authorized(req)) throw new ApiError('unauthorized', 'Check username/password');
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
    if (req.method !== 'GET') return renderError('v5', new ApiError('not_found', `no such API: ${req.method} ${req.path}`));
    if (this.options.metricsAuth && !this.authorized(req)) return renderError('v5', new ApiError('unauthorized', 'Check username/password'));
    const { contentType, text } = await this.options.metrics();
    return { status: 200, headers: { 'Content-Type': contentType }, body: text };
  }

  private authorized(req: HttpRequestData): boolean {
    const m = /^Basic\s+(\S+)$/i.exec(req.authorization);
    if (m === null) return false;
    // Compared as digests: equal lengths, and no timing hint about the secret.
    return timingSafeEqual(digest(Buffer.from(m[1] as string, 'base64').toString('utf8')), this.credentials);
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
