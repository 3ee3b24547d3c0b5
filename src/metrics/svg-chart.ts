// A line chart of time series as a standalone SVG: for people without Grafana at hand (`npm run
// chart`), e.g. per-node connections during a rebalance. No dependencies: axes, ticks, one path
// per series (broken where samples are missing), a legend.

export interface ChartSeries {
  readonly name: string;
  /** [unix seconds, value], ascending; NaN values are gaps. */
  readonly points: ReadonlyArray<readonly [number, number]>;
  /** Drawn dashed (e.g. a total). */
  readonly dashed?: boolean;
}

export interface ChartOptions {
  readonly title: string;
  /** Seconds between samples: a longer gap breaks the line. */
  readonly step: number;
  readonly width?: number;
  readonly height?: number;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const MARGIN = { left: 70, right: 200, top: 40, bottom: 50 };

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Tick values 0..>= max at a 1/2/5 x 10^k spacing, about `count` of them. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  for (let v = 0; v < max + step; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmt(n: number): string {
  return Math.abs(n) >= 1e6 ? `${n / 1e6}M` : Math.abs(n) >= 1e4 ? `${n / 1e3}k` : String(n);
}

/** The SVG document. */
export function renderChart(series: readonly ChartSeries[], opts: ChartOptions): string {
  const width = opts.width ?? 960;
  const height = opts.height ?? 480;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  let t0 = Infinity;
  let t1 = -Infinity;
  let vMax = 0;
  for (const s of series) {
    for (const [t, v] of s.points) {
      t0 = Math.min(t0, t);
      t1 = Math.max(t1, t);
      if (Number.isFinite(v)) vMax = Math.max(vMax, v);
    }
  }
  if (!Number.isFinite(t0)) [t0, t1] = [0, 1];
  if (t1 === t0) t1 = t0 + 1;
  const yTicks = niceTicks(vMax);
  const yTop = yTicks.at(-1) as number;
  const x = (t: number): number => MARGIN.left + ((t - t0) / (t1 - t0)) * plotW;
  const y = (v: number): number => MARGIN.top + plotH - (v / yTop) * plotH;
  const r = (n: number): string => n.toFixed(1);

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="24" font-size="16" font-weight="bold">${escapeXml(opts.title)}</text>`,
  ];
  for (const v of yTicks) {
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${r(y(v))}" y2="${r(y(v))}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${MARGIN.left - 8}" y="${r(y(v) + 4)}" text-anchor="end">${fmt(v)}</text>`);
  }
  const xTicks = 6;
  for (let i = 0; i <= xTicks; i++) {
    const t = t0 + ((t1 - t0) * i) / xTicks;
    const label = new Date(t * 1000).toISOString().slice(11, 19);
    out.push(`<line x1="${r(x(t))}" x2="${r(x(t))}" y1="${MARGIN.top + plotH}" y2="${MARGIN.top + plotH + 5}" stroke="#333"/>`);
    out.push(`<text x="${r(x(t))}" y="${MARGIN.top + plotH + 20}" text-anchor="middle">${label}</text>`);
  }
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${height - 8}" text-anchor="middle" fill="#555">time (UTC)</text>`);
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);

  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length] as string;
    let d = '';
    let prev: number | undefined;
    for (const [t, v] of s.points) {
      if (!Number.isFinite(v)) {
        prev = undefined;
        continue;
      }
      d += `${prev === undefined || t - prev > opts.step * 1.5 ? 'M' : 'L'}${r(x(t))},${r(y(v))}`;
      prev = t;
    }
    const dash = s.dashed === true ? ' stroke-dasharray="6 4"' : '';
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash}><title>${escapeXml(s.name)}</title></path>`);
    const ly = MARGIN.top + 10 + i * 20;
    const lx = MARGIN.left + plotW + 16;
    out.push(`<line x1="${lx}" x2="${lx + 20}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"${dash}/>`);
    out.push(`<text x="${lx + 26}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
