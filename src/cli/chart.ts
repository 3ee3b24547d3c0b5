// `npm run chart -- [options]` (node dist/cli/chart.js): per-node connections over time from a
// Prometheus range query, written as an SVG, for people without Grafana at hand.
import { writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { PrometheusError, queryRange, type RangeSeries } from '../metrics/prometheus-api.js';
import { renderChart, type ChartSeries } from '../metrics/svg-chart.js';

/** Connections per node, named by tidemq_node_info's `node` label. */
export const DEFAULT_QUERY = 'sum by (instance) (tidemq_connections) * on (instance) group_left (node) tidemq_node_info';

/** Points per chart when no step is given. */
const TARGET_POINTS = 300;

const USAGE = `Usage: npm run chart -- [options]
  --prometheus URL   Prometheus base URL (http://127.0.0.1:9090)
  --query PROMQL     range query, one line per series (connections per node)
  --from TIME        start: now, now-15m, -2h, unix seconds or an ISO date (now-15m)
  --to TIME          end (now)
  --step SECONDS     resolution (range / ${TARGET_POINTS}, at least 1)
  --title TEXT       chart title
  --total            add a dashed line with the sum of the series
  --out FILE         SVG file to write (connections.svg)
`;

class UsageError extends Error {}

/** A time option in unix seconds. */
export function parseTime(s: string, now: number): number {
  const rel = /^(?:now)?(?:-(\d+(?:\.\d+)?)([smhd]))?$/.exec(s);
  if (rel !== null && s !== '') {
    const unit = { s: 1, m: 60, h: 3600, d: 86400 }[rel[2] as 's' | 'm' | 'h' | 'd'] ?? 0;
    return now - Number(rel[1] ?? 0) * unit;
  }
  if (/^\d+(?:\.\d+)?$/.test(s)) return Number(s);
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) throw new UsageError(`not a time: ${s}`);
  return ms / 1000;
}

/** The legend name of a series: its node, else its instance, else its labels. */
export function seriesName(labels: Readonly<Record<string, string>>): string {
  if (labels.node !== undefined) return labels.node;
  if (labels.instance !== undefined) return labels.instance;
  const rest = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return rest.length === 0 ? 'value' : rest.join(',');
}

/** The per-timestamp sum of every series (a total line). */
export function totalSeries(series: readonly RangeSeries[]): ChartSeries {
  const sums = new Map<number, number>();
  for (const s of series) for (const [t, v] of s.points) if (Number.isFinite(v)) sums.set(t, (sums.get(t) ?? 0) + v);
  return { name: 'total', dashed: true, points: [...sums].sort((a, b) => a[0] - b[0]) };
}

/** Runs the command; returns the exit code (0 written, 1 Prometheus failed, 2 usage). */
export async function runChart(args: string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  try {
    const { values: o } = parseArgs({
      args,
      strict: true,
      options: {
        prometheus: { type: 'string', default: 'http://127.0.0.1:9090' },
        query: { type: 'string', default: DEFAULT_QUERY },
        from: { type: 'string', default: 'now-15m' },
        to: { type: 'string', default: 'now' },
        step: { type: 'string' },
        title: { type: 'string' },
        total: { type: 'boolean', default: false },
        out: { type: 'string', default: 'connections.svg' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (o.help) {
      out(USAGE);
      return 0;
    }
    const now = Date.now() / 1000;
    const start = parseTime(o.from, now);
    const end = parseTime(o.to, now);
    if (!(end > start)) throw new UsageError('--to must be after --from');
    const step = o.step === undefined ? Math.max(1, Math.ceil((end - start) / TARGET_POINTS)) : Number(o.step);
    if (!(step > 0)) throw new UsageError(`invalid --step: ${o.step}`);
    const result = await queryRange(o.prometheus, o.query, start, end, step);
    const series: ChartSeries[] = result.map((s) => ({ name: seriesName(s.labels), points: s.points })).sort((a, b) => a.name.localeCompare(b.name));
    if (o.total) series.push(totalSeries(result));
    const title = o.title ?? (o.query === DEFAULT_QUERY ? 'Connections per node' : o.query);
    await writeFile(o.out, renderChart(series, { title, step }));
    out(`${o.out}: ${result.length} series, ${new Date(start * 1000).toISOString()} .. ${new Date(end * 1000).toISOString()}, step ${step} s\n`);
    return 0;
  } catch (e) {
    if (e instanceof PrometheusError) {
      err(`chart: ${e.message}\n`);
      return 1;
    }
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      err(`chart: ${(e as Error).message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runChart(process.argv.slice(2));
}
