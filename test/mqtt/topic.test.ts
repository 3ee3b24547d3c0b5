// Topic names, filters, shared subscriptions, matching and filter coverage (topic.ts).
import t from 'tap';
import { filterCovers, filtersOverlap, parseSharedFilter, topicFilterError, topicMatches, topicNameError } from '../../src/mqtt/topic.js';

t.test('topic names', async (t) => {
  for (const ok of ['a', 'a/b', '/', 'a//b', '$SYS/x', ' ', 'é/中']) t.equal(topicNameError(ok, 8), undefined, ok);
  t.ok(topicNameError('', 8), 'empty [MQTT-4.7.3-1]');
  t.ok(topicNameError('a/+', 8), "'+' [MQTT-3.3.2-2]");
  t.ok(topicNameError('a/#', 8), "'#'");
  t.equal(topicNameError('a/b/c', 3), undefined, 'exactly max levels');
  t.ok(topicNameError('a/b/c/d', 3), 'over max levels');
  t.match(topicNameError('$share/g/a', 8), /\$share/, 'a topic name cannot address a shared subscription');
  t.equal(topicNameError('$shared/a', 8), undefined, 'only the $share/ prefix');
});

t.test('topic filters', async (t) => {
  for (const ok of ['#', '+', 'a/#', '+/+', 'a/+/b', '/+', '+/', 'a//#', '$SYS/#']) t.equal(topicFilterError(ok, 8), undefined, ok);
  for (const bad of ['', 'a#', 'a/#/b', '#/', 'a+', '+a', 'a/b+', '##', '++']) t.ok(topicFilterError(bad, 8), bad);
  t.ok(topicFilterError('a/b/c/#', 3), 'over max levels');
});

t.test('shared subscriptions', async (t) => {
  t.equal(parseSharedFilter('a/b'), undefined, 'not shared');
  t.strictSame(parseSharedFilter('$share/g/a/+'), { group: 'g', filter: 'a/+' });
  t.type(parseSharedFilter('$share/g'), 'string', 'no filter [MQTT-4.8.2-2]');
  t.type(parseSharedFilter('$share/g/'), 'string', 'empty filter');
  t.type(parseSharedFilter('$share//a'), 'string', 'empty share name [MQTT-4.8.2-1]');
  t.type(parseSharedFilter('$share/g+/a'), 'string', 'wildcard in share name');
  t.type(parseSharedFilter('$share/g#/a'), 'string', 'wildcard in share name');
});

t.test('matching', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a', false],
    ['a/+', 'a/', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['#', 'a/b', true],
    ['+/+', '/x', true],
    ['#', '$SYS/x', false], // [MQTT-4.7.2-1]
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['a/b', 'a/b/c', false],
  ];
  for (const [filter, topic, expected] of cases) t.equal(topicMatches(filter, topic), expected, `${filter} ~ ${topic}`);
});

t.test('filter coverage', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['#', 'a/b', true],
    ['#', '+/#', true],
    ['#', '$SYS/#', false],
    ['a/#', 'a', true],
    ['a/#', 'a/+/c', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/#', false],
    ['a/+', 'a/+/c', false],
    ['+', '$SYS', false],
    ['+/#', '$SYS/x', false],
    ['a', 'a/#', false],
    ['a/b', 'a/+', false],
    ['$SYS/#', '$SYS/x/+', true],
  ];
  for (const [outer, inner, expected] of cases) t.equal(filterCovers(outer, inner), expected, `${outer} covers ${inner}`);
});

t.test('filter overlap (some topic matches both)', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['secret/#', '#', true],
    ['secret/#', '+/+', true],
    ['secret/#', '+/x', true],
    ['secret/#', 'secret', true],
    ['secret/#', 'public/#', false],
    ['secret/+', 'secret', false],
    ['a/+/c', 'a/b/+', true],
    ['a/+/c', 'a/b/d', false],
    ['a/b', 'a/b/c', false],
    ['a/#', 'a', true],
    ['#', '$SYS/#', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/+', true],
    ['+', '+', true],
  ];
  for (const [a, b, expected] of cases) {
    t.equal(filtersOverlap(a, b), expected, `${a} overlaps ${b}`);
    t.equal(filtersOverlap(b, a), expected, `${b} overlaps ${a}`);
  }
});
