// Value parsers for config keys. One parser per kind of value, shared by the file, environment
// and flag layers: a file gives typed TOML/JSON values, the environment and flags give strings.

/** A value as it comes from a file, the environment or a flag, before it is checked. */
export type RawValue = string | number | boolean | readonly RawValue[];

/** How one key's value is parsed; `expected` completes "expected ..." in the error message. */
export interface ValueSpec<T> {
  readonly expected: string;
  /** The parsed value, or undefined when `raw` is not of this kind. */
  parse(raw: RawValue): T | undefined;
}

const NUMBER = /^[+-]?\d+(?:\.\d+)?$/;

function toNumber(raw: RawValue): number | undefined {
  if (typeof raw === 'number') return raw;
  if (typeof raw === 'string' && NUMBER.test(raw.trim())) return Number(raw.trim());
  return undefined;
}

export function str(): ValueSpec<string> {
  return { expected: 'a string', parse: (raw) => (typeof raw === 'string' ? raw : undefined) };
}

export function nonEmptyStr(): ValueSpec<string> {
  return { expected: 'a non-empty string', parse: (raw) => (typeof raw === 'string' && raw !== '' ? raw : undefined) };
}

/** A URL path (the WebSocket endpoint): `/` and then path characters, no query. */
export function urlPath(): ValueSpec<string> {
  return { expected: 'a URL path such as /mqtt', parse: (raw) => (typeof raw === 'string' && /^\/[\w\-./~]*$/.test(raw) ? raw : undefined) };
}

export function bool(): ValueSpec<boolean> {
  return {
    expected: 'true or false',
    parse(raw) {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      return undefined;
    },
  };
}

export function int(min: number, max: number): ValueSpec<number> {
  return {
    expected: `an integer from ${min} to ${max}`,
    parse(raw) {
      const n = toNumber(raw);
      return n !== undefined && Number.isInteger(n) && n >= min && n <= max ? n : undefined;
    },
  };
}

export function port(): ValueSpec<number> {
  return { ...int(0, 65535), expected: 'a port number from 0 to 65535 (0 = any free port)' };
}

export function oneOf<const T extends string>(values: readonly T[]): ValueSpec<T> {
  return {
    expected: `one of ${values.join(', ')}`,
    parse: (raw) => (typeof raw === 'string' ? values.find((v) => v === raw) : undefined),
  };
}

export function qos(): ValueSpec<0 | 1 | 2> {
  return {
    expected: '0, 1 or 2',
    parse(raw) {
      const n = toNumber(raw);
      return n === 0 || n === 1 || n === 2 ? n : undefined;
    },
  };
}

// Binary units, as EMQX reads them: KB = KiB = 1024 bytes.
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};
const SIZE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i;

/** A byte count: a number of bytes or a string such as `64KB`, `1MB`, `1MiB`. */
export function size(min: number, max: number): ValueSpec<number> {
  return {
    expected: `a size such as 1048576 or 1MB (from ${min} to ${max} bytes)`,
    parse(raw) {
      let n: number | undefined;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string') {
        const m = SIZE.exec(raw.trim());
        const unit = m ? SIZE_UNITS[(m[2] ?? '').toLowerCase() || 'b'] : undefined;
        if (m && unit !== undefined) n = Math.floor(Number(m[1]) * unit);
      }
      return n !== undefined && Number.isInteger(n) && n >= min && n <= max ? n : undefined;
    },
  };
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i;

/** A duration in seconds: a number of seconds or a string such as `500ms`, `15s`, `5m`, `1h`. */
export function duration(max: number): ValueSpec<number> {
  return {
    expected: `a duration such as 15, 500ms, 15s, 5m or 1h (at most ${max} s)`,
    parse(raw) {
      let n: number | undefined;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string') {
        const m = DURATION.exec(raw.trim());
        if (m) n = Number(m[1]) * (DURATION_UNITS[(m[2] ?? 's').toLowerCase()] ?? Number.NaN);
      }
      return n !== undefined && Number.isFinite(n) && n >= 0 && n <= max ? n : undefined;
    },
  };
}

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*@[A-Za-z0-9_.:[\]-]+$/;

export function nodeName(): ValueSpec<string> {
  return {
    expected: 'a node name such as tidemq1@127.0.0.1 (name@host)',
    parse: (raw) => (typeof raw === 'string' && NODE_NAME.test(raw) ? raw : undefined),
  };
}

/** Node names: an array, or one string split on commas and spaces (the environment form). */
export function nodeList(): ValueSpec<string[]> {
  const one = nodeName();
  return {
    expected: 'a list of node names such as ["tidemq1@127.0.0.1", "tidemq2@127.0.0.1"]',
    parse(raw) {
      const items = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? (raw as readonly RawValue[]) : undefined;
      if (!items) return undefined;
      const names: string[] = [];
      for (const item of items) {
        if (typeof item !== 'string') return undefined;
        for (const part of item.split(/[\s,]+/)) {
          if (part === '') continue;
          if (one.parse(part) === undefined) return undefined;
          names.push(part);
        }
      }
      return names;
    },
  };
}
