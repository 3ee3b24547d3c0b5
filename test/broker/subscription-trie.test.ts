import t from 'tap';
import { SubscriptionTrie } from '../../src/broker/subscription-trie.js';
import { topicMatches } from '../../src/mqtt/topic.js';
import { randomFilter, randomTopic, seededRandom, pick } from '../helpers/random.js';

type Hit = { filter: string; key: string };

function collect(acc: string[], value: Hit, key: string): void {
  acc.push(`${value.filter}|${key}`);
}

function matched(trie: SubscriptionTrie<Hit>, topic: string): string[] {
  const acc: string[] = [];
  trie.match(topic, acc, collect);
  return acc.sort();
}

t.test('wildcard rules', async (t) => {
  const trie = new SubscriptionTrie<Hit>();
  const filters = ['a/#', '#', '+', '+/+', 'a/+', 'a/b', '$SYS/#', '$SYS/+', '+/#', 'a//b', 'a/+/b', '/+'];
  for (const f of filters) trie.add(f, 'c', { filter: f, key: 'c' });
  const of = (topic: string) => matched(trie, topic).map((s) => s.split('|')[0]).sort();
  t.same(of('a'), ['#', '+', '+/#', 'a/#'].sort(), "'#' matches the parent level");
  t.same(of('a/b'), ['#', '+/#', '+/+', 'a/#', 'a/+', 'a/b'].sort());
  t.same(of('a//b'), ['#', '+/#', 'a/#', 'a//b', 'a/+/b'].sort(), "'+' matches an empty level");
  t.same(of('/x'), ['#', '+/#', '+/+', '/+'].sort());
  t.same(of('$SYS/x'), ['$SYS/#', '$SYS/+'].sort(), 'first-level wildcards skip $ topics [MQTT-4.7.2-1]');
  t.same(of('$SYS'), ['$SYS/#']);
  t.same(of('x/$SYS'), ['#', '+/#', '+/+'].sort(), "'$' below the first level is an ordinary level");
});

t.test('add/remove return values, replace, size and pruning', async (t) => {
  const trie = new SubscriptionTrie<number>();
  t.equal(trie.add('a/+/c', 'k1', 1), true, 'first entry of a filter');
  t.equal(trie.add('a/+/c', 'k2', 2), false, 'second key on the same filter');
  t.equal(trie.add('a/+/c', 'k1', 3), false, 'replacing a value');
  t.equal(trie.get('a/+/c', 'k1'), 3);
  t.equal(trie.size, 2);
  t.equal(trie.filterCount, 1);
  t.equal(trie.add('a/#', 'k1', 4), true);
  t.equal(trie.filterCount, 2);
  t.equal(trie.remove('a/+/c', 'nope'), false, 'unknown key');
  t.equal(trie.remove('x/y', 'k1'), false, 'unknown filter');
  t.equal(trie.remove('a/+/c', 'k1'), false, 'entries remain');
  t.equal(trie.remove('a/+/c', 'k2'), true, 'last entry gone: route delete');
  t.equal(trie.remove('a/+/c', 'k2'), false, 'second remove is not another route delete');
  t.equal(trie.get('a/+/c', 'k2'), undefined);
  t.equal(trie.size, 1);
  t.equal(trie.filterCount, 1);
  t.equal(trie.remove('a/#', 'k1'), true);
  t.equal(trie.size, 0);
  t.equal(trie.filterCount, 0);
  const root = (trie as unknown as { root: { children?: Map<string, unknown>; plus?: unknown; hash?: unknown } }).root;
  t.equal(root.children, undefined, 'every node pruned');
  t.equal(root.plus, undefined);
  t.equal(root.hash, undefined);
  t.same(matched(trie as unknown as SubscriptionTrie<Hit>, 'a/b/c'), []);
});

t.test('pruning keeps nodes that still lead somewhere', async (t) => {
  const trie = new SubscriptionTrie<number>();
  trie.add('a/b/c', 'k', 1);
  trie.add('a', 'k', 2);
  trie.remove('a/b/c', 'k');
  const root = (trie as unknown as { root: { children: Map<string, { children?: Map<string, unknown> }> } }).root;
  const a = root.children.get('a');
  t.ok(a, "'a' still holds an entry");
  t.equal(a?.children, undefined, "'a/b' and 'a/b/c' are gone");
  t.equal(trie.get('a', 'k'), 2);
});

t.test('many keys on one filter: swap-remove keeps get and match right', async (t) => {
  const rnd = seededRandom(7);
  const trie = new SubscriptionTrie<number>();
  const alive = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    trie.add('big/+', `k${i}`, i);
    alive.set(`k${i}`, i);
  }
  let routeDeletes = 0;
  for (let i = 0; i < 300; i++) {
    const key = `k${Math.floor(rnd() * 300)}`;
    if (trie.remove('big/+', key)) routeDeletes++;
    alive.delete(key);
  }
  t.equal(routeDeletes, 0, 'entries remain');
  t.ok(alive.size < 200, 'a good part was removed');
  let wrong = 0;
  for (let i = 0; i < 300; i++) if (trie.get('big/+', `k${i}`) !== alive.get(`k${i}`)) wrong++;
  t.equal(wrong, 0, 'get after removals');
  const seen: Array<[string, number]> = [];
  trie.match('big/x', seen, (acc, value, key) => acc.push([key, value]));
  t.same(new Map(seen), alive);
  t.equal(seen.length, alive.size);
});

t.test('visit may remove the entry it is visiting', async (t) => {
  const trie = new SubscriptionTrie<number>();
  for (let i = 0; i < 10; i++) trie.add('a/b', `k${i}`, i);
  trie.add('a/#', 'h', 98);
  const seen: string[] = [];
  const ctx = { trie, seen };
  trie.match('a/b', ctx, (c, value, key) => {
    c.seen.push(key);
    if (value % 2 === 0) c.trie.remove(value === 98 ? 'a/#' : 'a/b', key);
  });
  t.same(seen.sort(), ['h', ...Array.from({ length: 10 }, (_, i) => `k${i}`)].sort(), 'each visited once');
  t.equal(trie.size, 5);
  t.equal(trie.get('a/b', 'k1'), 1);
  t.equal(trie.get('a/b', 'k2'), undefined);
});

t.test('random filters and topics against topicMatches', async (t) => {
  const seed = 0x71de;
  const rnd = seededRandom(seed);
  const trie = new SubscriptionTrie<Hit>();
  const model = new Map<string, Hit>(); // `${filter}|${key}` -> value
  const keys = ['k1', 'k2', 'k3'];
  let hits = 0;
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 25; i++) {
      const filter = randomFilter(rnd);
      const key = pick(rnd, keys);
      const id = `${filter}|${key}`;
      if (rnd() < 0.3 && model.size > 0) {
        const [victim] = [...model.keys()].slice(Math.floor(rnd() * model.size));
        const v = model.get(victim as string) as Hit;
        model.delete(victim as string);
        const last = ![...model.values()].some((h) => h.filter === v.filter);
        if (trie.remove(v.filter, v.key) !== last) t.fail(`remove(${victim}) result, seed ${seed}`);
      } else {
        const first = ![...model.values()].some((h) => h.filter === filter);
        model.set(id, { filter, key });
        if (trie.add(filter, key, { filter, key }) !== first) t.fail(`add(${id}) result, seed ${seed}`);
      }
    }
    t.equal(trie.size, model.size, `size after round ${round}`);
    t.equal(trie.filterCount, new Set([...model.values()].map((h) => h.filter)).size);
    for (let i = 0; i < 50; i++) {
      const topic = randomTopic(rnd);
      const expected = [...model.values()].filter((h) => topicMatches(h.filter, topic)).map((h) => `${h.filter}|${h.key}`).sort();
      const got = matched(trie, topic);
      hits += got.length;
      if (JSON.stringify(got) !== JSON.stringify(expected)) t.same(got, expected, `topic ${JSON.stringify(topic)}, seed ${seed}`);
    }
  }
  t.ok(model.size > 50, 'the model grew enough to be interesting');
  t.ok(hits > 1000, `the topics matched many entries (${hits})`);
});
