// A small client of Prometheus's HTTP API (range queries), for `npm run chart` and the tests
// that check the dashboards against a real Prometheus.

/** One series of a range query: its labels and [unix seconds, value] points (NaN kept as NaN). */
export interface RangeSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly points: ReadonlyArray<readonly [number, number]>;
}

interface RangeResponse {
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }> };
}

/** A failed query: HTTP error or Prometheus's own error text. */
export class PrometheusError extends Error {
  override name = 'PrometheusError';
}

/** GET /api/v1/query_range; times in unix seconds, step in seconds. */
export async function queryRange(baseUrl: string, query: string, start: number, end: number, step: number): Promise<RangeSeries[]> {
  const url = new URL('/api/v1/query_range', baseUrl);
  url.search = new URLSearchParams({ query, start: String(start), end: String(end), step: String(step) }).toString();
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new PrometheusError(`cannot reach Prometheus at ${baseUrl}: ${(err as Error).message}`);
  }
  const text = await res.text();
  let body: RangeResponse;
  try {
    body = JSON.parse(text) as RangeResponse;
  } catch {
    throw new PrometheusError(`Prometheus answered HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  if (body.status !== 'success' || body.data === undefined) throw new PrometheusError(`query failed: ${body.error ?? `HTTP ${res.status}`}: ${query}`);
  if (body.data.resultType !== 'matrix') throw new PrometheusError(`expected a matrix, got ${body.data.resultType}: ${query}`);
  return body.data.result.map((r) => ({ labels: r.metric, points: r.values.map(([t, v]) => [t, Number(v)] as const) }));
}
