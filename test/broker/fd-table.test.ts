// The descriptor table grown at start: read from /proc, sized from max_connections within the
// open-file limit and the cap, grown by a worker that leaves no descriptor open, and grown by a
// starting node before it listens.
import { readdirSync, readFileSync } from 'node:fs';
import { pino } from 'pino';
import t from 'tap';
import { FD_TABLE_CAP, fdTableGoal, growFdTable, parseFdSize, parseOpenFileLimit, RESERVED_FDS } from '../../src/broker/fd-table.js';
import { startNode } from '../../src/node.js';
import { inProcessNodeConfig } from './support.js';

function fdSize(): number {
  return parseFdSize(readFileSync('/proc/self/status', 'utf8')) ?? 0;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

const limit = parseOpenFileLimit(readFileSync('/proc/self/limits', 'utf8')) ?? 0;

t.test('the table size and the open-file limit are read from /proc', async (t) => {
  t.equal(parseFdSize('Name:\tnode\nFDSize:\t256\nGid:\t0\n'), 256);
  t.equal(parseFdSize('Name:\tnode\n'), undefined, 'no FDSize line');
  const limits = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             63408                63408                processes ',
    'Max open files            20000                40000                files     ',
  ].join('\n');
  t.equal(parseOpenFileLimit(limits), 20000, 'the soft limit');
  t.equal(parseOpenFileLimit('Max open files            unlimited            unlimited            files     '), Number.MAX_SAFE_INTEGER);
  t.equal(parseOpenFileLimit('Max processes             63408                63408                processes '), undefined);
  t.ok(fdSize() > 0, 'this process has a table');
  t.ok(limit > 0, 'and a limit');
});

t.test('the goal is max_connections plus what a node holds beside them, within the open-file limit and the cap', async (t) => {
  t.equal(fdTableGoal(3000, 20000), 3000 + RESERVED_FDS);
  t.equal(fdTableGoal(1_000_000, 20000), 20000, 'the open-file limit');
  t.equal(fdTableGoal(1_000_000, 1_048_576), FD_TABLE_CAP, 'the cap');
});

t.test('a starting node grows the table for its max_connections before it listens, no further', async (t) => {
  const config = inProcessNodeConfig(t, 'fds@127.0.0.1');
  config.mqtt.max_connections = 3000;
  t.ok(fdSize() < 3000 + RESERVED_FDS, `small before (${fdSize()} slots)`);
  const node = await startNode(config, pino({ level: 'silent' }));
  t.teardown(() => node.close());
  const slots = fdSize();
  t.ok(slots >= Math.min(3000 + RESERVED_FDS, limit), `${slots} slots once listening`);
  t.ok(slots <= 8192, 'not grown to the open-file limit');
});

t.test('growing opens descriptors on a worker thread and closes every one of them', async (t) => {
  const goal = Math.min(limit, 16384);
  const before = openFds();
  const grown = await growFdTable(goal);
  t.ok(grown.opened > 0, `${grown.opened} descriptors opened`);
  t.equal(grown.error, undefined);
  t.ok(grown.after >= goal, `${grown.before} -> ${grown.after} slots`);
  t.equal(fdSize(), grown.after);
  t.equal(openFds(), before, 'none left open');
  const again = await growFdTable(goal);
  t.equal(again.opened, 0, 'a table already that large is left alone');
  t.equal(again.after, grown.after);
});

t.test('a goal past the open-file limit stops at the limit (EMFILE) and still closes everything', async (t) => {
  const before = openFds();
  const grown = await growFdTable(limit * 4);
  t.equal(grown.error, undefined, 'EMFILE ends the growth, it is no failure');
  t.ok(grown.opened > limit / 2, `opened ${grown.opened} descriptors, up to the limit of ${limit}`);
  t.equal(openFds(), before, 'none left open');
});
