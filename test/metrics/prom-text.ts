// A small parser of the Prometheus text exposition format (version 0.0.4), for the metrics tests.

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  help?: string;
  type?: string;
  readonly samples: Sample[];
}

/** Histogram and summary samples belong to the family named without these suffixes. */
const SUFFIXES = ['_bucket', '_sum', '_count'];

function familyOf(families: Map<string, Family>, sample: string): string {
  if (families.has(sample)) return sample;
  for (const suffix of SUFFIXES) {
    const base = sample.slice(0, -suffix.length);
    if (sample.endsWith(suffix) && families.has(base)) return base;
  }
  return sample;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(text)) !== null) {
    labels[m[1] as string] = (m[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    end = re.lastIndex;
  }
  if (end !== text.length) throw new Error(`bad labels: {${text}}`);
  return labels;
}

/** Families by name; throws on a line that is none of HELP, TYPE, comment, sample or blank. */
export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) families.set(name, (f = { samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m !== null) {
      const f = family(m[2] as string);
      if (m[1] === 'HELP') f.help = m[3];
      else f.type = m[3];
      continue;
    }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (m === null) throw new Error(`not a Prometheus text line: ${line}`);
    const name = m[1] as string;
    family(familyOf(families, name)).samples.push({ name, labels: parseLabels(m[2] ?? ''), value: Number(m[3]) });
  }
  return families;
}

/** The value of the sample `name` whose labels include `labels` (0 when there is none). */
export function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const samples = families.get(familyOf(families, name))?.samples ?? [];
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value ?? 0;
}
