// Every PromQL expression of the Grafana dashboards names only metrics a node exports.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadAcl } from '../../src/broker/acl.js';
import { createAuthenticator } from '../../src/broker/auth.js';
import { Broker } from '../../src/broker/broker.js';
import { TimerWheel } from '../../src/broker/timer-wheel.js';
import { defaultConfig } from '../../src/config/schema.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { repoRoot } from '../helpers/build.js';
import { parsePrometheus } from './prom-text.js';

/** Series Prometheus itself adds to every target. */
const PROMETHEUS_OWN = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
/** PromQL words that are not metric names. */
const KEYWORDS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset',
  'rate', 'irate', 'increase', 'delta', 'deriv', 'histogram_quantile', 'abs', 'clamp_min', 'clamp_max', 'time', 'vector', 'scalar',
]);

/** Metric names in one PromQL expression (or a Grafana `label_values(metric, label)` query). */
function metricNames(expr: string): string[] {
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
function queries(node: unknown, out: string[] = []): string[] {
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

function dashboardFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.json'))
    .map((f) => join(dir, f));
}

t.test('metricNames reads PromQL', async (t) => {
  t.same(metricNames('sum by (instance) (rate(tidemq_x_total{a="b",c=~"$v"}[$__rate_interval])) * on (instance) group_left (node) tidemq_node_info'), ['tidemq_x_total', 'tidemq_node_info']);
  t.same(metricNames('max by (instance) (a_open / a_max)'), ['a_open', 'a_max']);
  t.same(metricNames('label_values(tidemq_node_info, instance)'), ['tidemq_node_info']);
  t.same(metricNames('count(up{job="tidemq"} == 1)'), ['up']);
});

t.test('the dashboards use only exported metrics', async (t) => {
  const config = defaultConfig();
  const broker = new Broker(config, new TimerWheel(250), createAuthenticator(config.auth), loadAcl(config.auth), pino({ level: 'silent' }));
  const metrics = new Metrics({ nodeName: config.node.name, version: 'test', broker, listeners: [{ name: 'tcp', stats: { live: 0, accepted: 0, rateLimited: 0, maxConnections: 0, refused: 0, emfile: 0 } }] });
  const families = parsePrometheus(await metrics.text());
  const exported = new Set<string>();
  for (const [name, f] of families) {
    exported.add(name);
    for (const s of f.samples) exported.add(s.name);
  }
  const files = dashboardFiles(join(repoRoot, 'grafana'));
  t.ok(files.length >= 1, 'dashboards found');
  for (const file of files) {
    const exprs = queries(JSON.parse(readFileSync(file, 'utf8')));
    t.ok(exprs.length >= 10, `${file}: ${exprs.length} queries`);
    const used = new Set(exprs.flatMap(metricNames));
    t.ok(used.has('tidemq_connections') && used.has('tidemq_sessions'), `${file} charts connections and sessions`);
    for (const name of used) t.ok(exported.has(name) || PROMETHEUS_OWN.has(name), `${file}: ${name} is exported`);
  }
});
