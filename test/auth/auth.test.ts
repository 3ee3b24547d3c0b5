import t from 'tap';
import { scryptSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUTH_CACHE_SIZE, createAuthenticator } from '../../src/broker/auth.js';
import { hashPassword, parseHash, parsePasswordFile, setUserLine, userNameError, verifyPassword } from '../../src/broker/passwords.js';
import { ConfigError } from '../../src/config/schema.js';
import type { Config } from '../../src/config/schema.js';

const dir = t.testdir();
const pw = (s: string): Buffer => Buffer.from(s);

function auth(over: Partial<Config['auth']>): Config['auth'] {
  return { allow_anonymous: true, password_file: '', acl_file: '', acl_default: 'allow', ...over };
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof ConfigError ? err.message : `not a ConfigError: ${String(err)}`;
  }
  return 'nothing thrown';
}

/** A hash with the cheapest scrypt cost, so tests can make thousands. */
function cheapHash(password: string): string {
  const salt = Buffer.from('0123456789abcdef');
  const hash = scryptSync(password, salt, 32, { N: 2, r: 1, p: 1 });
  return `scrypt$2$1$1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

t.test('hashes: salted, self-describing, verifiable', async (t) => {
  const a = await hashPassword(pw('secret'));
  const b = await hashPassword(pw('secret'));
  t.match(a, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/);
  t.not(a, b, 'a random salt makes each hash different');
  const h = parseHash(a);
  if (!h) throw new Error('hash did not parse');
  t.equal(h.salt.length, 16);
  t.equal(await verifyPassword(h, pw('secret')), true);
  t.equal(await verifyPassword(h, pw('Secret')), false);
  const cheap = parseHash(cheapHash('x'));
  t.ok(cheap && (await verifyPassword(cheap, pw('x'))), 'stored parameters are used');
  for (const bad of ['plain', 'scrypt$16384$8$1$abc', 'scrypt$1000$8$1$YWJj$YWJj', 'scrypt$16384$8$1$YWJj$YWJj$x', 'bcrypt$16384$8$1$YWJj$YWJj', 'scrypt$2097152$8$1$YWJj$YWJj']) {
    t.equal(parseHash(bad), undefined, bad);
  }
});

t.test('password file lines', async (t) => {
  const users = parsePasswordFile(`# users\n\nalice:${cheapHash('a')}\r\nbob:${cheapHash('b')}\n`, 'pw');
  t.same([...users.keys()], ['alice', 'bob']);
  t.match(errorOf(() => parsePasswordFile(`alice:${cheapHash('a')}\nbob\n`, 'pw')), /^pw:2: expected user:scrypt/);
  t.match(errorOf(() => parsePasswordFile(`alice:md5$x\n`, 'pw')), /^pw:1:/);
  t.match(errorOf(() => parsePasswordFile(`:${cheapHash('a')}\n`, 'pw')), /^pw:1:/);
  t.match(errorOf(() => parsePasswordFile(`a:${cheapHash('a')}\na:${cheapHash('b')}\n`, 'pw')), /^pw:2: user a appears twice/);
  t.equal(setUserLine('', 'a', 'H1'), 'a:H1\n');
  t.equal(setUserLine('# c\nab:X\na:H1\nb:H2\n', 'a', 'H3'), '# c\nab:X\na:H3\nb:H2\n', 'replaces only that user');
  t.equal(setUserLine('b:H2', 'a', 'H1'), 'b:H2\na:H1\n');
  t.equal(userNameError('alice'), undefined);
  for (const bad of ['', 'a:b', 'a b', 'a\nb', '#a']) t.type(userNameError(bad), 'string', JSON.stringify(bad));
});

t.test('anonymous on and off', async (t) => {
  t.equal(createAuthenticator(auth({ allow_anonymous: true })).authenticate('c', undefined, undefined), true);
  t.equal(createAuthenticator(auth({ allow_anonymous: false })).authenticate('c', undefined, undefined), false);
  t.equal(createAuthenticator(auth({ allow_anonymous: true })).authenticate('c', 'alice', pw('x')), false, 'a user name needs a password file entry');
});

t.test('password verification and the cache', async (t) => {
  const file = join(dir, 'passwd');
  writeFileSync(file, `alice:${await hashPassword(pw('wonderland'))}\nbob:${cheapHash('builder')}\n`);
  const a = createAuthenticator(auth({ allow_anonymous: false, password_file: file }));
  t.equal(a.authenticate('c', 'carol', pw('x')), false, 'unknown user: false at once');
  t.equal(a.authenticate('c', 'alice', undefined), false, 'no password: false at once');

  const wrong = a.authenticate('c', 'alice', pw('wrong'));
  t.type(wrong, Promise, 'scrypt runs asynchronously');
  t.equal(await wrong, false, 'wrong password');
  t.type(a.authenticate('c', 'alice', pw('wrong')), Promise, 'a failure is not cached');

  const first = a.authenticate('c1', 'alice', pw('wonderland'));
  const second = a.authenticate('c2', 'alice', pw('wonderland'));
  t.equal(first, second, 'concurrent checks of the same credentials share one scrypt run');
  t.equal(await first, true, 'right password');
  t.equal(a.authenticate('c3', 'alice', pw('wonderland')), true, 'then cached: true at once');
  t.type(a.authenticate('c3', 'alice', pw('wonderland2')), Promise, 'the cache is keyed by the password too');
  t.equal(await a.authenticate('c', 'bob', pw('builder')), true, 'another user, other parameters');
  t.type(a.authenticate('c', 'bob', pw('wonderland')), Promise, "alice's password is not bob's");
});

t.test('the cache is bounded (LRU)', async (t) => {
  const file = join(dir, 'many');
  const hash = cheapHash('p');
  const names = Array.from({ length: AUTH_CACHE_SIZE + 1 }, (_, i) => `u${i}`);
  writeFileSync(file, names.map((n) => `${n}:${hash}\n`).join(''));
  const a = createAuthenticator(auth({ password_file: file }));
  t.equal(await a.authenticate('c', 'u0', pw('p')), true);
  t.equal(await a.authenticate('c', 'u1', pw('p')), true);
  t.equal(a.authenticate('c', 'u0', pw('p')), true, 'u0 used again: now the most recent');
  for (const n of names.slice(2)) await a.authenticate('c', n, pw('p'));
  t.type(a.authenticate('c', 'u1', pw('p')), Promise, 'the least recently used entry was dropped');
  t.equal(a.authenticate('c', 'u0', pw('p')), true, 'a recently used entry stays');
});

t.test('bad password files', async (t) => {
  t.match(errorOf(() => createAuthenticator(auth({ password_file: join(dir, 'missing') }))), /cannot read auth\.password_file .*missing: ENOENT/);
  const bad = join(dir, 'bad');
  writeFileSync(bad, 'alice:nope\n');
  t.match(errorOf(() => createAuthenticator(auth({ password_file: bad }))), /bad:1: expected user:scrypt/);
});
