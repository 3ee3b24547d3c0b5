import t from 'tap';
import { parseToml } from '../../src/config/toml.js';
import { ConfigError } from '../../src/config/schema.js';

function errorOf(text: string): string {
  try {
    parseToml(text, 'f.toml');
  } catch (err) {
    return err instanceof ConfigError ? err.message : `not a ConfigError: ${String(err)}`;
  }
  return 'nothing thrown';
}

t.test('values', async (t) => {
  const doc = parseToml(
    [
      '# header comment',
      '',
      '[a]',
      's = "q\\"\\\\\\n\\t\\u00e9\\U0001F600" # comment with "quotes"',
      "l = 'C:\\path # not a comment'",
      'i = -42',
      'u = 1_000',
      'f = 2.5',
      'e = 1e3',
      'yes = true',
      'no = false',
      'arr = [1, "two", [true], ]',
      'empty = []',
      'multi = [',
      '  "x", # one',
      '',
      '  "y"',
      ']',
      '[b]',
      'key-with_dash = "v"',
      '',
    ].join('\n'),
    'f.toml',
  );
  t.same(doc, {
    a: {
      s: 'q"\\\n\té\u{1F600}',
      l: 'C:\\path # not a comment',
      i: -42,
      u: 1000,
      f: 2.5,
      e: 1000,
      yes: true,
      no: false,
      arr: [1, 'two', [true]],
      empty: [],
      multi: ['x', 'y'],
    },
    b: { 'key-with_dash': 'v' },
  });
  t.same(parseToml('[x]\r\nk = 1\r\n', 'f.toml'), { x: { k: 1 } }, 'CRLF line ends');
});

t.test('errors carry the file and line number', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['k = 1', /^f\.toml:1: key k is outside a \[section\]/],
    ['[a]\n\nk = ', /^f\.toml:3: expected a value/],
    ['[a]\nk = "open', /^f\.toml:2: unterminated string/],
    ["[a]\nk = 'open\n'", /^f\.toml:2: unterminated string/],
    ['[a]\nk = """x"""', /^f\.toml:2: multi-line strings/],
    ['[a]\nk = "\\x"', /^f\.toml:2: bad escape/],
    ['[a]\nk = "\\uD800"', /^f\.toml:2: bad unicode escape/],
    ['[a]\nk = 1 2', /^f\.toml:2: unexpected "2"/],
    ['[a]\nk = 1979-05-27', /^f\.toml:2: expected a value/],
    ['[a]\nk = {x = 1}', /^f\.toml:2: expected a value/],
    ['[a]\nk = [1 2]', /^f\.toml:2: expected "," or "]"/],
    ['[a]\nk = [1,\n2', /^f\.toml:3: expected "," or "]"/],
    ['[a]\nk = truthy', /^f\.toml:2: expected a value/],
    ['[a]\na.b = 1', /^f\.toml:2: expected "=" after a \(dotted/],
    ['[a]\n"k" = 1', /^f\.toml:2: expected a key/],
    ['[a.b]', /^f\.toml:1: expected "\]" after the section name/],
    ['[[a]]', /^f\.toml:1: arrays of tables/],
    ['[a]\n[a]', /^f\.toml:2: section \[a\] appears twice/],
    ['[a]\nk = 1\nk = 2', /^f\.toml:3: key k appears twice/],
    ['[a] x', /^f\.toml:1: unexpected "x"/],
  ];
  for (const [text, pattern] of cases) t.match(errorOf(text), pattern, JSON.stringify(text));
});
