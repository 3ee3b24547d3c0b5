// A small YAML emitter for the documents `tidemq k8s manifests` prints: block mappings and
// sequences, every string a JSON (double-quoted YAML) scalar, so no value is ever misread (`on`,
// `1e3`, `yes`). JSON-shaped data only; documents are joined with `---`.

export type YamlValue = string | number | boolean | null | readonly YamlValue[] | { readonly [key: string]: YamlValue | undefined };

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_.\/-]*$/;

function scalar(v: string | number | boolean | null): string {
  if (typeof v === 'number' && !Number.isFinite(v)) throw new TypeError(`not a YAML number: ${v}`);
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

const key = (k: string): string => (PLAIN_KEY.test(k) ? k : JSON.stringify(k));

function isCollection(v: YamlValue): v is readonly YamlValue[] | { readonly [key: string]: YamlValue | undefined } {
  return typeof v === 'object' && v !== null;
}

function isEmpty(v: YamlValue): boolean {
  return Array.isArray(v) ? v.length === 0 : isCollection(v) && Object.values(v).every((x) => x === undefined);
}

/** Lines of `v` at `indent`; a collection in a sequence starts on the dash's line. */
function lines(v: YamlValue, indent: string, out: string[]): void {
  if (Array.isArray(v)) {
    for (const item of v as readonly YamlValue[]) {
      if (isCollection(item) && !isEmpty(item)) {
        const start = out.length;
        lines(item, `${indent}  `, out);
        out[start] = `${indent}- ${(out[start] as string).slice(indent.length + 2)}`;
      } else out.push(`${indent}- ${isCollection(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item as string | number | boolean | null)}`);
    }
    return;
  }
  for (const [k, item] of Object.entries(v as { readonly [key: string]: YamlValue | undefined })) {
    if (item === undefined) continue;
    if (isCollection(item) && !isEmpty(item)) {
      out.push(`${indent}${key(k)}:`);
      lines(item, Array.isArray(item) ? indent : `${indent}  `, out);
    } else out.push(`${indent}${key(k)}: ${isCollection(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item as string | number | boolean | null)}`);
  }
}

/** One YAML document per value, `---` between them. */
export function toYaml(docs: readonly YamlValue[]): string {
  return docs
    .map((doc) => {
      const out: string[] = [];
      lines(doc, '', out);
      return `${out.join('\n')}\n`;
    })
    .join('---\n');
}
