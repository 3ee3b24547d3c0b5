// The Grafana dashboards' queries, for the tests that check them (names against a node's
// /metrics, and results against a real Prometheus).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/build.js';

/** Series Prometheus itself adds to every target. */
export const PROMETHEUS_OWN = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
/** PromQL words that are not metric names. */
const KEYWORDS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset',
  'rate', 'irate', 'increase', 'delta', 'deriv', 'histogram_quantile', 'abs', 'clamp_min', 'clamp_max', 'time', 'vector', 'scalar',
]);

/** Metric names in one PromQL expression (or a Grafana `label_values(metric, label)` query). */
export function metricNames(expr: string): string[] {
  const lv = /^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*,/.exec(expr);
  if (lv !== null) return [lv[1] as string];
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = stripped.slice((m.index ?? 0) + m[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(m[0])) continue;
    names.push(m[0]);
  }
  return names;
}

/** Every `expr`, and every templating query, anywhere in a dashboard. */
export function queries(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) queries(n, out);
  else if (typeof node === 'object' && node !== null) {
    for (const [key, v] of Object.entries(node)) {
      if ((key === 'expr' || key === 'definition') && typeof v === 'string') out.push(v);
      else if (key === 'query' && typeof v === 'string' && v.includes('(')) out.push(v);
      else queries(v, out);
    }
  }
  return out;
}

export function dashboardFiles(dir = join(repoRoot, 'grafana')): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.json'))
    .map((f) => join(dir, f));
}

/** Every dashboard file with its queries. */
export function dashboardQueries(): Array<{ file: string; exprs: string[] }> {
  return dashboardFiles().map((file) => ({ file, exprs: queries(JSON.parse(readFileSync(file, 'utf8'))) }));
}
