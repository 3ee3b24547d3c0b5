// The TOML subset a tidemq config needs: `[section]` tables of `key = value` lines whose values are
// strings, integers, floats, booleans or arrays of those, and `#` comments. Anything else (dotted
// or quoted keys, inline tables, dates, multi-line strings) is an error with its line number.
import { ConfigError } from './schema.js';
import type { RawValue } from './values.js';

export type RawSections = Record<string, Record<string, RawValue>>;

const BARE_KEY = /[A-Za-z0-9_-]+/y;
const NUMBER = /[+-]?\d+(?:_\d+)*(?:\.\d+(?:_\d+)*)?(?:[eE][+-]?\d+)?/y;
const ESCAPES: Readonly<Record<string, string>> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' };

export function parseToml(text: string, file: string): RawSections {
  let pos = 0;
  let line = 1;
  const out: RawSections = {};
  let section: Record<string, RawValue> | undefined;

  const fail = (what: string): never => {
    throw new ConfigError(`${file}:${line}: ${what}`);
  };
  const skipSpaces = (): void => {
    while (text[pos] === ' ' || text[pos] === '\t') pos++;
  };
  const skipComment = (): void => {
    if (text[pos] === '#') while (pos < text.length && text[pos] !== '\n') pos++;
  };
  /** Skips blank space, comments and newlines (inside arrays and between statements). */
  const skipBlank = (): void => {
    for (;;) {
      skipSpaces();
      skipComment();
      if (text[pos] === '\r' && text[pos + 1] === '\n') pos++;
      if (text[pos] !== '\n') return;
      pos++;
      line++;
    }
  };
  const endOfLine = (): void => {
    skipSpaces();
    skipComment();
    if (text[pos] === '\r' && text[pos + 1] === '\n') pos++;
    if (pos < text.length && text[pos] !== '\n') fail(`unexpected ${JSON.stringify(text[pos])}, expected the end of the line`);
  };
  const bareKey = (what: string): string => {
    BARE_KEY.lastIndex = pos;
    const m = BARE_KEY.exec(text);
    if (!m) return fail(`expected ${what}`);
    pos = BARE_KEY.lastIndex;
    return m[0];
  };

  const basicString = (): string => {
    let s = '';
    pos++;
    for (;;) {
      const c = text[pos++];
      if (c === undefined || c === '\n') return fail('unterminated string');
      if (c === '"') return s;
      if (c !== '\\') {
        s += c;
        continue;
      }
      const e = text[pos++] ?? '';
      const simple = ESCAPES[e];
      if (simple !== undefined) {
        s += simple;
      } else if (e === 'u' || e === 'U') {
        const hex = text.slice(pos, pos + (e === 'u' ? 4 : 8));
        const code = /^[0-9A-Fa-f]+$/.test(hex) && hex.length === (e === 'u' ? 4 : 8) ? parseInt(hex, 16) : Number.NaN;
        if (!(code <= 0x10ffff) || (code >= 0xd800 && code <= 0xdfff)) fail(`bad unicode escape \\${e}${hex}`);
        s += String.fromCodePoint(code);
        pos += hex.length;
      } else {
        fail(`bad escape \\${e}`);
      }
    }
  };

  const literalString = (): string => {
    const end = text.indexOf("'", pos + 1);
    const nl = text.indexOf('\n', pos + 1);
    if (end < 0 || (nl >= 0 && nl < end)) return fail('unterminated string');
    const s = text.slice(pos + 1, end);
    pos = end + 1;
    return s;
  };

  const value = (): RawValue => {
    const c = text[pos];
    if (c === '"') {
      if (text.startsWith('"""', pos)) fail('multi-line strings are not supported');
      return basicString();
    }
    if (c === "'") {
      if (text.startsWith("'''", pos)) fail('multi-line strings are not supported');
      return literalString();
    }
    if (c === '[') {
      pos++;
      const items: RawValue[] = [];
      for (;;) {
        skipBlank();
        if (text[pos] === ']') break;
        items.push(value());
        skipBlank();
        if (text[pos] === ',') pos++;
        else if (text[pos] !== ']') fail('expected "," or "]" in an array');
      }
      pos++;
      return items;
    }
    if (text.startsWith('true', pos) && !/[\w-]/.test(text[pos + 4] ?? '')) {
      pos += 4;
      return true;
    }
    if (text.startsWith('false', pos) && !/[\w-]/.test(text[pos + 5] ?? '')) {
      pos += 5;
      return false;
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m && !/[\w.:-]/.test(text[NUMBER.lastIndex] ?? '')) {
      pos = NUMBER.lastIndex;
      return Number(m[0].replaceAll('_', ''));
    }
    return fail('expected a value: a "string", a number, true, false or an [array]');
  };

  for (;;) {
    skipBlank();
    if (pos >= text.length) return out;
    if (text[pos] === '[') {
      if (text[pos + 1] === '[') fail('arrays of tables are not supported');
      pos++;
      skipSpaces();
      const name = bareKey('a section name');
      skipSpaces();
      if (text[pos] !== ']') fail('expected "]" after the section name (nested sections are not supported)');
      pos++;
      if (Object.hasOwn(out, name)) fail(`section [${name}] appears twice`);
      section = out[name] = {};
    } else {
      const key = bareKey('a key or a [section]');
      skipSpaces();
      if (text[pos] !== '=') fail(`expected "=" after ${key} (dotted and quoted keys are not supported)`);
      if (!section) return fail(`key ${key} is outside a [section]`);
      pos++;
      skipSpaces();
      const v = value();
      if (Object.hasOwn(section, key)) fail(`key ${key} appears twice`);
      section[key] = v;
    }
    endOfLine();
  }
}
