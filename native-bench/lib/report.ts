// Medians, the printed tables, the target check, and the JSON/SVG files.
import type { BrokerId } from './brokers.js';
import type { Sample, Scenario } from './scenarios.js';

export type Samples = Map<string, Map<BrokerId, Sample[]>>; // scenario id -> broker -> repetitions

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Median of the valid repetitions' values (NaN if none was valid). */
export function medianOf(samples: Sample[] | undefined, pick: (s: Sample) => number = (s) => s.value): number {
  return median((samples ?? []).filter((s) => s.valid).map(pick));
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

export function resultsTable(scenarios: readonly Scenario[], brokers: readonly BrokerId[], samples: Samples): string {
  const others = brokers.filter((b) => b !== 'tidemq');
  const head = ['scenario', 'unit', ...brokers, ...(brokers.includes('tidemq') ? others.map((b) => `tidemq/${b}`) : [])];
  const rows = scenarios.map((sc) => {
    const m = new Map(brokers.map((b) => [b, medianOf(samples.get(sc.id)?.get(b))] as const));
    const t = m.get('tidemq') ?? Number.NaN;
    return [
      sc.id,
      `${sc.unit}${sc.better === 'lower' ? ' (lower better)' : ''}`,
      ...brokers.map((b) => fmt(m.get(b) ?? Number.NaN)),
      ...(brokers.includes('tidemq') ? others.map((b) => fmt(t / (m.get(b) ?? Number.NaN))) : []),
    ];
  });
  return table([head, ...rows]);
}

/** Which side ran out of CPU: each process is single-threaded, so ~90% of a core is its limit. */
export function saturated(brokerPct: number, loadPct: number): string {
  if (brokerPct + loadPct >= 180) return 'machine';
  if (brokerPct >= 90) return 'broker';
  if (loadPct >= 90) return 'loadgen';
  return 'neither';
}

export function cpuTable(scenarios: readonly Scenario[], brokers: readonly BrokerId[], samples: Samples): string {
  const rows = scenarios.map((sc) => [
    sc.id,
    ...brokers.map((b) => {
      const s = samples.get(sc.id)?.get(b);
      if (!s?.length) return '-';
      const bp = median(s.map((x) => x.brokerCpuPct));
      const lp = median(s.map((x) => x.loadCpuPct));
      return `${fmt(bp)}/${fmt(lp)} ${saturated(bp, lp)}`;
    }),
  ]);
  return table([['cpu % broker/loadgen', ...brokers], ...rows]);
}

export interface TargetCheck {
  target: string;
  value: string;
  verdict: 'met' | 'NOT met' | 'n/a';
}

export function targets(samples: Samples): TargetCheck[] {
  const med = (sc: string, b: BrokerId): number => medianOf(samples.get(sc)?.get(b));
  const ratio = (sc: string, b: BrokerId): number => med(sc, 'tidemq') / med(sc, b);
  const check = (target: string, x: number, ok: (v: number) => boolean, unit: string): TargetCheck => ({
    target,
    value: Number.isFinite(x) ? `${fmt(x)}${unit}` : '-',
    verdict: Number.isFinite(x) ? (ok(x) ? 'met' : 'NOT met') : 'n/a',
  });
  return [
    check('connect rate >= 0.9x Node.js reference', ratio('connect-rate', 'ref-node'), (v) => v >= 0.9, 'x'),
    check('connect rate >= 4x Aedes', ratio('connect-rate', 'aedes'), (v) => v >= 4, 'x'),
    check('CONNACK p99 at 5000 conn/s <= Node.js reference', ratio('connack-p99', 'ref-node'), (v) => v <= 1, 'x'),
    check('idle memory <= 3 KiB per connection', med('idle-rss', 'tidemq'), (v) => v <= 3, ' KiB'),
    check('fan-out >= 1.0x Mosquitto', ratio('fanout', 'mosquitto'), (v) => v >= 1, 'x'),
    check('fan-in >= 0.7x Mosquitto', ratio('fanin', 'mosquitto'), (v) => v >= 0.7, 'x'),
    check('one host, --nodes N on one port >= 1.5x Mosquitto', ratio('host', 'mosquitto'), (v) => v >= 1.5, 'x'),
  ];
}

export function targetsTable(checks: TargetCheck[]): string {
  return table([['target (tidemq)', 'measured', 'verdict'], ...checks.map((c) => [c.target, c.value, c.verdict])]);
}

const COLORS: Record<BrokerId, string> = {
  tidemq: '#1f77b4',
  mosquitto: '#2ca02c',
  aedes: '#ff7f0e',
  'ref-node': '#9467bd',
  'ref-c': '#7f7f7f',
};

/** One group of horizontal bars per scenario, each scaled to the best broker of that scenario. */
export function svgChart(scenarios: readonly Scenario[], brokers: readonly BrokerId[], samples: Samples, title: string): string {
  const barH = 16;
  const left = 330;
  const width = 900;
  const parts: string[] = [];
  let y = 40;
  for (const sc of scenarios) {
    const vals = brokers.map((b) => [b, medianOf(samples.get(sc.id)?.get(b))] as const).filter(([, v]) => Number.isFinite(v));
    if (vals.length === 0) continue;
    const max = Math.max(...vals.map(([, v]) => v));
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${esc(sc.title)} (${esc(sc.unit)}${sc.better === 'lower' ? ', lower is better' : ''})</text>`);
    y += 20;
    for (const [b, v] of vals) {
      const w = max > 0 ? ((width - left - 90) * v) / max : 0;
      parts.push(`<text x="${left - 8}" y="${y + 12}" text-anchor="end">${b}</text>`);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH - 3}" fill="${COLORS[b]}"/>`);
      parts.push(`<text x="${(left + w + 6).toFixed(1)}" y="${y + 12}">${fmt(v)}</text>`);
      y += barH;
    }
    y += 14;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
