// The rebalance arithmetic (SPEC 7) over a table of count vectors: donors (>= mean) and recipients
// (< mean), the balance test with `<=` on floats, nothing_to_balance, eviction budgets and the
// preview's moves and ETA.
import t from 'tap';
import { REBALANCE_DEFAULTS, type RebalanceOptions } from '../../src/rebalance/options.js';
import { evictionBudget, evictionTarget, planRebalance, previewPlan, split, withinThresholds, type NodeCounts } from '../../src/rebalance/plan.js';

const nodes = (conns: readonly number[], sessions: readonly number[] = conns, disconnected: readonly number[] = conns.map(() => 0)): NodeCounts[] =>
  conns.map((c, i) => ({ node: `n${i + 1}@h`, connections: c, sessions: sessions[i] as number, disconnected: disconnected[i] as number }));
const opts = (o: Partial<RebalanceOptions> = {}): RebalanceOptions => ({ ...REBALANCE_DEFAULTS, ...o });

t.test('withinThresholds: <= on floats, abs or rel', async (t) => {
  t.ok(withinThresholds(150, 100, { abs: 50, rel: 1.1 }), 'exactly recipient + abs');
  t.notOk(withinThresholds(150.5, 100, { abs: 50, rel: 1.1 }), 'a fraction above abs, above rel');
  t.ok(withinThresholds(110, 100, { abs: 1, rel: 1.1 }), 'exactly recipient * rel');
  t.notOk(withinThresholds(110.01, 100, { abs: 1, rel: 1.1 }));
  t.ok(withinThresholds(0, 0, { abs: 1, rel: 1.1 }));
});

t.test('donors and recipients by the mean; averages as floats', async (t) => {
  const table: Array<{ conns: number[]; donors: string[]; recipients: string[]; avg: number; donorAvg: number; recipientAvg: number }> = [
    { conns: [1000, 1000, 1000, 0], donors: ['n1@h', 'n2@h', 'n3@h'], recipients: ['n4@h'], avg: 750, donorAvg: 1000, recipientAvg: 0 },
    { conns: [10, 5], donors: ['n1@h'], recipients: ['n2@h'], avg: 7.5, donorAvg: 10, recipientAvg: 5 },
    { conns: [3, 3, 4], donors: ['n3@h'], recipients: ['n1@h', 'n2@h'], avg: 10 / 3, donorAvg: 4, recipientAvg: 3 },
    { conns: [7, 7], donors: ['n1@h', 'n2@h'], recipients: [], avg: 7, donorAvg: 7, recipientAvg: 0 },
    { conns: [0, 0, 0], donors: ['n1@h', 'n2@h', 'n3@h'], recipients: [], avg: 0, donorAvg: 0, recipientAvg: 0 },
    { conns: [5, 0, 0, 0], donors: ['n1@h'], recipients: ['n2@h', 'n3@h', 'n4@h'], avg: 1.25, donorAvg: 5, recipientAvg: 0 },
  ];
  for (const row of table) {
    const p = split(nodes(row.conns), opts());
    t.same([p.donors, p.recipients], [row.donors, row.recipients], `${row.conns}: donors/recipients`);
    t.equal(p.connAvg, row.avg, `${row.conns}: mean ${row.avg}`);
    t.same([p.donorConnAvg, p.recipientConnAvg], [row.donorAvg, row.recipientAvg]);
  }
});

t.test('nothing_to_balance: balanced, single node, no recipients; sessions alone can need it', async (t) => {
  const nothing = { code: 'nothing_to_balance', message: 'nothing_to_balance' };
  const table: Array<[string, NodeCounts[], Partial<RebalanceOptions>, boolean]> = [
    ['already balanced', nodes([750, 760, 740, 750]), { absConnThreshold: 100 }, false],
    ['a single node', nodes([3000]), { absConnThreshold: 1 }, false],
    ['50 vs 0 with abs 50 (<=)', nodes([50, 0]), { absConnThreshold: 50, absSessThreshold: 50 }, false],
    ['51 vs 0 with abs 50', nodes([51, 0]), { absConnThreshold: 50, absSessThreshold: 1000 }, true],
    ['equal counts: no recipient', nodes([10, 10]), { absConnThreshold: 1 }, false],
    ['1000/1000/1000/0 abs 100', nodes([1000, 1000, 1000, 0]), { absConnThreshold: 100 }, true],
    ['within rel only', nodes([105, 100]), { absConnThreshold: 1, relConnThreshold: 1.1, absSessThreshold: 1, relSessThreshold: 1.1 }, false],
    ['connections balanced, sessions not', nodes([100, 90], [2000, 10]), { absConnThreshold: 50, absSessThreshold: 100 }, true],
  ];
  for (const [what, counts, o, runs] of table) {
    if (runs) t.doesNotThrow(() => planRebalance(counts, opts(o)), `${what}: runs`);
    else t.throws(() => planRebalance(counts, opts(o)), nothing, `${what}: nothing_to_balance`);
    t.equal(previewPlan(counts, opts(o)).balanced, !runs, `${what}: the preview agrees`);
  }
});

t.test('eviction target and budget: the mean with reconnecting clients, never below it, at most rate * window', async (t) => {
  t.equal(evictionTarget([1000, 1000, 1000, 0], 0), 750);
  t.equal(evictionTarget([800, 800, 800, 300], 300), 750, 'clients on their way back count as still there');
  t.equal(evictionBudget(1000, 750, 500, 1500), 250, 'stops at the target, not at the rate');
  t.equal(evictionBudget(1000, 100, 500, 1500), 750, 'rate * window');
  t.equal(evictionBudget(751, 750.5, 500, 1500), 0, 'less than one above: nothing');
  t.equal(evictionBudget(700, 750, 500, 1500), 0, 'below the target: nothing');
  t.equal(evictionBudget(1000, 0, 3, 1000), 3);
});

t.test('preview: moves to the mean and ETA at the rates', async (t) => {
  const p = previewPlan(nodes([1000, 1000, 1000, 0], [1000, 1000, 1000, 0], [0, 0, 0, 0]), opts({ absConnThreshold: 100, connEvictRate: 500, waitHealthCheck: 10, waitTakeover: 5 }));
  t.match(p, {
    donors: ['n1@h', 'n2@h', 'n3@h'],
    recipients: ['n4@h'],
    connection_avg: 750,
    donor_conn_avg: 1000,
    recipient_conn_avg: 0,
    balanced: false,
    connections_to_move: 750,
    sessions_to_move: 0,
    eta_seconds: 10 + 1 + 5 + 0,
  });
  const s = previewPlan(nodes([300, 100], [300, 100], [250, 0]), opts({ absConnThreshold: 50, absSessThreshold: 50, connEvictRate: 20, sessEvictRate: 25, waitHealthCheck: 0, waitTakeover: 0 }));
  t.equal(s.connections_to_move, 100, 'connections: down to the mean of 200');
  t.equal(s.sessions_to_move, 125, 'disconnected sessions: down to the mean of 125');
  t.equal(s.eta_seconds, 5 + 5, '100 at 20/s, 125 at 25/s');
  const balanced = previewPlan(nodes([10, 0]), opts());
  t.same([balanced.balanced, balanced.connections_to_move, balanced.eta_seconds], [true, 0, 0]);
});
