import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAcl } from '../../src/broker/acl.js';
import type { Acl } from '../../src/broker/acl.js';
import { ConfigError, defaultConfig, type Config } from '../../src/config/schema.js';

const dir = t.testdir();
let n = 0;

function auth(over: Partial<Config['auth']>): Config['auth'] {
  return { ...defaultConfig().auth, ...over };
}

function acl(text: string, aclDefault: 'allow' | 'deny' = 'allow'): Acl {
  const file = join(dir, `acl${n++}`);
  writeFileSync(file, text);
  return loadAcl(auth({ acl_file: file, acl_default: aclDefault }));
}

function errorOf(text: string): string {
  try {
    acl(text);
  } catch (err) {
    return err instanceof ConfigError ? err.message.replace(dir, 'DIR') : `not a ConfigError: ${String(err)}`;
  }
  return 'nothing thrown';
}

const SPEC_EXAMPLE = `# verdict who            access     topic filter (%c = client id, %u = username)
deny      all            subscribe  test/nosubscribe
allow     user:alice     publish    sensors/#
allow     client:dev-1   all        devices/%c/#
`;

t.test('no acl_file: everything allowed', async (t) => {
  const a = loadAcl(auth({ acl_default: 'deny' }));
  t.equal(a.check('publish', 'c', undefined, 'x'), true);
  t.equal(a.check('subscribe', 'c', 'u', '#'), true);
});

t.test('the SPEC example', async (t) => {
  const a = acl(SPEC_EXAMPLE, 'deny');
  t.equal(a.check('subscribe', 'c', 'alice', 'test/nosubscribe'), false, 'deny all subscribe');
  t.equal(a.check('publish', 'c', 'alice', 'test/nosubscribe'), false, 'no publish rule: default deny');
  t.equal(a.check('publish', 'c', 'alice', 'sensors/1/temp'), true, 'alice publishes sensors/#');
  t.equal(a.check('publish', 'c', 'alice', 'sensors'), true, '# matches the parent level');
  t.equal(a.check('publish', 'c', 'bob', 'sensors/1'), false, 'bob is not alice');
  t.equal(a.check('publish', 'c', undefined, 'sensors/1'), false, 'anonymous is not alice');
  t.equal(a.check('subscribe', 'c', 'alice', 'sensors/#'), false, 'alice may only publish');
  t.equal(a.check('publish', 'dev-1', undefined, 'devices/dev-1/up'), true, 'client rule with %c, publish');
  t.equal(a.check('subscribe', 'dev-1', undefined, 'devices/dev-1/+'), true, 'client rule with %c, subscribe to a covered filter');
  t.equal(a.check('subscribe', 'dev-1', undefined, 'devices/dev-1/#'), true, 'the same filter');
  t.equal(a.check('subscribe', 'dev-1', undefined, 'devices/+/#'), false, 'a wider filter is not covered');
  t.equal(a.check('publish', 'dev-1', undefined, 'devices/dev-2/up'), false, "another device's topic");
  t.equal(a.check('publish', 'dev-2', undefined, 'devices/dev-2/up'), false, 'the rule is for client dev-1 only');
});

t.test('%c and %u', async (t) => {
  const a = acl('allow all all users/%u/%c/#\nallow all publish pre-%c-post\n', 'deny');
  t.equal(a.check('publish', 'c1', 'u1', 'users/u1/c1/x'), true);
  t.equal(a.check('subscribe', 'c1', 'u1', 'users/u1/c1/+'), true);
  t.equal(a.check('publish', 'c1', 'u1', 'users/u2/c1/x'), false, 'another user');
  t.equal(a.check('publish', 'c1', undefined, 'users//c1/x'), false, '%u without a user name never applies');
  t.equal(a.check('publish', 'abc', undefined, 'pre-abc-post'), true, 'placeholder inside a level');
  t.equal(a.check('publish', 'abd', undefined, 'pre-abc-post'), false);
  // A client id or user name holding a wildcard must not widen the rule to other clients' topics.
  t.equal(a.check('subscribe', '+', 'u1', 'users/u1/+/x'), false, 'client id "+"');
  t.equal(a.check('subscribe', '#', 'u1', 'users/u1/#'), false, 'client id "#"');
  t.equal(a.check('subscribe', 'c1', '#', 'users/#'), false, 'user name "#"');
  t.equal(a.check('publish', '+', 'u1', 'users/u1/c9/x'), false, 'client id "+" publishing');
});

t.test('first match wins, then the default', async (t) => {
  const a = acl('deny user:eve all secret/#\nallow all all secret/#\nallow all publish open/+\n');
  t.equal(a.check('publish', 'c', 'eve', 'secret/x'), false, 'the deny comes first');
  t.equal(a.check('publish', 'c', 'bob', 'secret/x'), true, 'the next rule for others');
  t.equal(a.check('subscribe', 'c', 'eve', 'secret/x/+'), false);
  t.equal(a.check('publish', 'c', 'eve', 'elsewhere'), true, 'no rule: acl_default allow');
  const b = acl('allow all all secret/#\ndeny user:eve all secret/#\n', 'deny');
  t.equal(b.check('publish', 'c', 'eve', 'secret/x'), true, 'order decides');
  t.equal(b.check('publish', 'c', 'eve', 'elsewhere'), false, 'no rule: acl_default deny');
});

t.test('wildcards in rules and requests', async (t) => {
  const a = acl('allow all subscribe a/+/c\nallow all publish #\n', 'deny');
  t.equal(a.check('subscribe', 'c', undefined, 'a/b/c'), true);
  t.equal(a.check('subscribe', 'c', undefined, 'a/+/c'), true);
  t.equal(a.check('subscribe', 'c', undefined, 'a/#'), false, 'a/# is wider than a/+/c');
  t.equal(a.check('subscribe', 'c', undefined, '$share/g/a/b/c'), true, 'a shared subscription is checked on its filter');
  t.equal(a.check('subscribe', 'c', undefined, '$share/g/a/#'), false);
  t.equal(a.check('publish', 'c', undefined, 'any/topic'), true);
  t.equal(a.check('publish', 'c', undefined, '$SYS/x'), false, '# does not match $ topics [MQTT-4.7.2-1]');
});

t.test('bad lines name the file and line', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['# ok\n\ndeny all subscribe\n', /acl\d+:3: expected 4 fields, got 3/],
    ['allow all publish a b\n', /:1: expected 4 fields, got 5/],
    ['permit all publish a\n', /:1: bad verdict "permit"/],
    ['allow everyone publish a\n', /:1: bad subject "everyone"/],
    ['allow user: publish a\n', /:1: bad subject "user:"/],
    ['allow all: publish a\n', /:1: bad subject "all:"/],
    ['allow all read a\n', /:1: bad access "read"/],
    ['allow all publish a/#/b\n', /:1: bad topic filter "a\/#\/b": '#' must be the last level/],
    ['allow all publish a+\n', /:1: bad topic filter/],
  ];
  for (const [text, pattern] of cases) t.match(errorOf(text), pattern, JSON.stringify(text));
  t.match(errorOf('allow all publish a b\n'), /expected: allow\|deny all\|user:NAME\|client:ID publish\|subscribe\|all FILTER/, 'shows the format');
  let missing = 'nothing thrown';
  try {
    loadAcl(auth({ acl_file: join(dir, 'nope') }));
  } catch (err) {
    missing = String(err);
  }
  t.match(missing, /ConfigError: cannot read auth\.acl_file .*nope: ENOENT/);
});

t.test('read access: which subscriptions are checked per topic, and the verdicts', async (t) => {
  const a = acl('deny all all secret/#\ndeny user:eve subscribe shared/eve-no/#\nallow all all #\n');
  for (const f of ['#', '+/+', '+/x', 'secret', 'secret/#']) t.equal(a.readLimited('c', undefined, f), true, `${f} overlaps secret/#`);
  for (const f of ['public/#', 'x/secret', 'a/+']) t.equal(a.readLimited('c', undefined, f), false, `${f} does not`);
  t.equal(a.readLimited('c', undefined, 'shared/#'), false, "eve's rule is not for others");
  t.equal(a.readLimited('c', 'eve', 'shared/#'), true, "eve's rule overlaps for eve");
  t.equal(a.mayRead('c', undefined, 'secret/door'), false);
  t.equal(a.mayRead('c', undefined, 'secret'), false, 'secret/# matches its parent level');
  t.equal(a.mayRead('c', undefined, 'public/door'), true);
  t.equal(a.mayRead('c', 'eve', 'shared/eve-no/x'), false);
  t.equal(a.mayRead('c', 'bob', 'shared/eve-no/x'), true, 'the cache keys the identity');
  t.equal(a.mayRead('c', '', 'shared/eve-no/x'), true, 'an empty user name is not an absent one');
  const d = acl('allow user:alice subscribe a/#\n', 'deny');
  t.equal(d.readLimited('c', 'alice', 'a/+'), false, 'granted as a whole, no deny rule: no per-topic check');
  t.equal(d.readLimited('c', 'bob', 'a/+'), true, 'not granted to this identity (a resumed session under another user): checked');
  t.equal(d.mayRead('c', 'bob', 'a/x'), false);
});

t.test('the read cache is bounded by auth.acl_cache_size', async (t) => {
  const file = join(dir, `acl${n++}`);
  writeFileSync(file, 'deny all all secret/#\n');
  const a = loadAcl(auth({ acl_file: file, acl_cache_size: 3 }));
  for (let i = 0; i < 10; i++) t.equal(a.mayRead('c', undefined, `secret/${i}`), false);
  t.equal(a.cacheSize, 3, 'never more entries than the bound');
  t.equal(a.mayRead('c', undefined, 'open/1'), true, 'verdicts stay right past the bound');
  const off = loadAcl(auth({ acl_file: file, acl_cache_size: 0 }));
  t.equal(off.mayRead('c', undefined, 'secret/1'), false);
  t.equal(off.cacheSize, 0, '0 turns the cache off');
});

t.test('$SYS: no client publishes there unless auth.allow_sys_publish', async (t) => {
  const none = loadAcl(auth({}));
  t.equal(none.check('publish', 'c', undefined, '$SYS/broker/uptime'), false, 'refused without an ACL file');
  t.equal(none.check('publish', 'c', undefined, '$SYS'), false);
  t.equal(none.check('publish', 'c', undefined, '$SYSTEM/x'), true, 'only $SYS itself');
  t.equal(none.check('subscribe', 'c', undefined, '$SYS/#'), true, 'reading $SYS is not refused');
  t.equal(loadAcl(auth({ allow_sys_publish: true })).check('publish', 'c', undefined, '$SYS/x'), true, 'allowed when switched on');
  const file = join(dir, `acl${n++}`);
  writeFileSync(file, 'allow all publish $SYS/#\n');
  t.equal(loadAcl(auth({ acl_file: file })).check('publish', 'c', undefined, '$SYS/x'), false, 'an ACL rule does not open $SYS');
});
