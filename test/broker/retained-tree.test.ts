import t from 'tap';
import { RetainedTree } from '../../src/broker/retained-tree.js';
import { topicMatches } from '../../src/mqtt/topic.js';
import { randomFilter, randomTopic, seededRandom } from '../helpers/random.js';

function collect(acc: string[], topic: string, message: string): void {
  acc.push(`${topic}=${message}`);
}

function matched(tree: RetainedTree<string>, filter: string): string[] {
  const acc: string[] = [];
  tree.match(filter, acc, collect);
  return acc.sort();
}

t.test('wildcard rules', async (t) => {
  const tree = new RetainedTree<string>();
  for (const topic of ['a', 'a/b', 'a/b/c', 'a//c', '/x', '$SYS/up', '$SYS', 'b/$x']) tree.set(topic, topic);
  const of = (filter: string) => matched(tree, filter).map((s) => s.split('=')[0]).sort();
  t.same(of('a/#'), ['a', 'a/b', 'a/b/c', 'a//c'].sort(), "'#' matches the parent level");
  t.same(of('#'), ['a', 'a/b', 'a/b/c', 'a//c', '/x', 'b/$x'].sort(), "'#' skips $ topics [MQTT-4.7.2-1]");
  t.same(of('+'), ['a'], "'+' skips $ topics [MQTT-4.7.2-1]");
  t.same(of('a/+/c'), ['a//c', 'a/b/c'].sort(), "'+' matches an empty level");
  t.same(of('+/+'), ['/x', 'a/b', 'b/$x'].sort());
  t.same(of('$SYS/#'), ['$SYS', '$SYS/up'].sort());
  t.same(of('$SYS/+'), ['$SYS/up']);
  t.same(of('a/b'), ['a/b']);
  t.same(of('a/x'), []);
});

t.test('set, replace, get, delete, size, entries and pruning', async (t) => {
  const tree = new RetainedTree<string>();
  tree.set('a/b/c', '1');
  tree.set('a', '2');
  tree.set('a/b/c', '3');
  t.equal(tree.size, 2, 'replacing does not add');
  t.equal(tree.get('a/b/c'), '3');
  t.equal(tree.get('a/b'), undefined, 'an inner node holds no message');
  t.same(matched(tree, 'a/b/c'), ['a/b/c=3'], 'match sees the replaced message');
  t.same([...tree.entries()].sort(), [['a', '2'], ['a/b/c', '3']]);
  t.equal(tree.delete('a/b'), false, 'inner node');
  t.equal(tree.delete('nope'), false);
  t.equal(tree.delete('a/b/c'), true);
  t.equal(tree.delete('a/b/c'), false, 'already gone');
  t.equal(tree.size, 1);
  t.same(matched(tree, '#'), ['a=2']);
  const root = (tree as unknown as { root: { children?: Map<string, { children?: unknown }> } }).root;
  t.equal(root.children?.get('a')?.children, undefined, "'a/b' and 'a/b/c' pruned, 'a' kept");
  t.equal(tree.delete('a'), true);
  t.equal(root.children, undefined, 'every node pruned');
  t.equal(tree.size, 0);
  t.same([...tree.entries()], []);
});

t.test('random topics and filters against topicMatches', async (t) => {
  const seed = 0x5eed;
  const rnd = seededRandom(seed);
  const tree = new RetainedTree<string>();
  const model = new Map<string, string>();
  let hits = 0;
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 20; i++) {
      const topic = randomTopic(rnd);
      if (rnd() < 0.3) {
        if (tree.delete(topic) !== model.delete(topic)) t.fail(`delete(${topic}), seed ${seed}`);
      } else {
        const message = `${round}.${i}`;
        tree.set(topic, message);
        model.set(topic, message);
      }
    }
    t.equal(tree.size, model.size, `size after round ${round}`);
    for (let i = 0; i < 50; i++) {
      const filter = randomFilter(rnd);
      const expected = [...model].filter(([topic]) => topicMatches(filter, topic)).map(([k, v]) => `${k}=${v}`).sort();
      const got = matched(tree, filter);
      hits += got.length;
      if (JSON.stringify(got) !== JSON.stringify(expected)) t.same(got, expected, `filter ${JSON.stringify(filter)}, seed ${seed}`);
    }
  }
  t.same(new Map(tree.entries()), model, 'entries() equals the model');
  t.ok(hits > 1000, `the filters matched many topics (${hits})`);
});
