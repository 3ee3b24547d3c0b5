// The rebalance coordinator and its donors on a fake clock over simulated nodes (SPEC 7): the states
// in order, donors 503 from the start and refusing after the health-check wait, evictions at the
// rate down to the mean (no overshoot), evicted clients reconnecting to recipients, sessions moved,
// done with every donor released; abort when a participant fails; a donor gives up on its own when
// its coordinator goes quiet; already_started, not_started, eviction_agent_busy.
import { pino } from 'pino';
import t from 'tap';
import { RebalanceCoordinator, type Participants, type RebalanceState } from '../../src/rebalance/coordinator.js';
import { LEASE_MS, RebalanceDonor, reportOf, type DonorSync, type ParticipantReport } from '../../src/rebalance/donor.js';
import { RebalanceError } from '../../src/rebalance/errors.js';
import type { EvictionKind } from '../../src/rebalance/eviction-agent.js';
import { REBALANCE_DEFAULTS, type RebalanceOptions } from '../../src/rebalance/options.js';
import { FakeClock } from './fake-clock.js';

const log = pino({ level: 'silent' });

/** One simulated node: connections, persistent sessions (some disconnected), its agent and donor. */
class SimNode {
  kind: EvictionKind | null = null;
  allow = true;
  conns: number;
  disconnected: number;
  readonly evicted = { evacuation: { connections: 0, sessions: 0 }, rebalance: { connections: 0, sessions: 0 } };
  movesInFlight = 0;
  /** ms of each eviction, for the rate. */
  evictedAt: number[] = [];
  readonly donor: RebalanceDonor;
  up = true;

  constructor(
    readonly name: string,
    conns: number,
    disconnected: number,
    private readonly sim: Sim,
  ) {
    this.conns = conns;
    this.disconnected = disconnected;
    this.donor = new RebalanceDonor({ node: name, agent: this, clock: sim.clock, log, reachable: (n) => sim.node(n).up });
  }
  enable(kind: EvictionKind, _redirect: string | undefined, allow: boolean): void {
    if (this.kind !== null && this.kind !== kind) throw new RebalanceError('eviction_agent_busy', 'eviction_agent_busy');
    this.kind = kind;
    this.allow = allow;
  }
  disable(kind: EvictionKind): void {
    if (this.kind === kind) {
      this.kind = null;
      this.allow = true;
    }
  }
  evictConnections(n: number): number {
    const k = Math.min(n, this.conns);
    this.conns -= k;
    this.evicted.rebalance.connections += k;
    for (let i = 0; i < k; i++) {
      this.evictedAt.push(this.sim.clock.now());
      this.sim.reconnect();
    }
    return k;
  }
  evictSessions(n: number, nodes: readonly string[]): number {
    const k = Math.min(n, this.disconnected);
    this.disconnected -= k;
    for (let i = 0; i < k; i++) this.sim.node(nodes[i % nodes.length] as string).disconnected++;
    return k;
  }
  connectionCount(): number {
    return this.conns;
  }
  sessionCount(): number {
    return this.conns + this.disconnected;
  }
  disconnectedSessionCount(): number {
    return this.disconnected;
  }
}

/** The nodes, and the load balancer: an evicted client reconnects after `reconnectMs` to the accepting node with the fewest connections. */
class Sim implements Participants {
  readonly clock = new FakeClock();
  readonly nodes: SimNode[];
  reconnectMs = 300;
  failing: string | null = null;

  constructor(conns: number[], disconnected: number[] = conns.map(() => 0)) {
    this.nodes = conns.map((c, i) => new SimNode(`n${i + 1}@h`, c, disconnected[i] as number, this));
  }
  node(name: string): SimNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
  }
  reconnect(): void {
    this.clock.setTimer(() => {
      const open = this.nodes.filter((n) => n.up && n.allow && n.kind === null);
      open.sort((a, b) => a.conns - b.conns);
      if (open[0] !== undefined) open[0].conns++;
    }, this.reconnectMs);
  }
  private reach(node: string): SimNode {
    const n = this.node(node);
    if (!n.up || this.failing === node) throw new RebalanceError('rpc_failed', `rpc on ${node}: node went down`);
    return n;
  }
  async report(node: string): Promise<ParticipantReport> {
    return reportOf(node, this.reach(node));
  }
  lastSync: DonorSync | undefined;
  async sync(node: string, s: DonorSync): Promise<void> {
    this.lastSync = s;
    this.reach(node).donor.sync(s);
  }
  async release(node: string, coordinator: string, id: string): Promise<void> {
    this.reach(node).donor.release(coordinator, id);
  }
  /** Moves the fake clock in 10 ms steps, letting the coordinator's promises settle after each. */
  async run(ms: number, until?: () => boolean): Promise<void> {
    for (let t = 0; t < ms; t += 10) {
      this.clock.advance(10);
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      if (until?.() === true) return;
    }
  }
}

const opts = (o: Partial<RebalanceOptions>): RebalanceOptions => ({ ...REBALANCE_DEFAULTS, ...o });

function coordinatorOf(sim: Sim, node = 'n1@h'): RebalanceCoordinator {
  return new RebalanceCoordinator({ node, participants: sim, clock: sim.clock, log });
}

t.test('1000/1000/1000/0 at 500/s, abs 100: every state, balanced without overshoot, sessions moved, donors released', async (t) => {
  const sim = new Sim([1000, 1000, 1000, 0], [300, 300, 300, 0]);
  const [n1, n2, n3, n4] = sim.nodes as [SimNode, SimNode, SimNode, SimNode];
  const c = coordinatorOf(sim);
  const states: Array<RebalanceState | null> = [];
  const total = (): number => sim.nodes.reduce((a, n) => a + n.conns, 0);
  await c.start(opts({ absConnThreshold: 100, absSessThreshold: 50, connEvictRate: 500, sessEvictRate: 100, waitHealthCheck: 3, waitTakeover: 2 }), sim.nodes.map((n) => n.name));
  t.same(c.status(), {
    state: 'wait_health_check',
    coordinator_node: 'n1@h',
    connection_eviction_rate: 500,
    session_eviction_rate: 100,
    donors: ['n1@h', 'n2@h', 'n3@h'],
    recipients: ['n4@h'],
    connection_goal: 0,
    disconnected_session_goal: 0,
    donor_conn_avg: 1000,
    donor_sess_avg: 300,
  });
  t.same([n1.kind, n1.allow, n4.kind], ['rebalance', true, null], 'donors 503 at once, still accepting; the recipient untouched');
  t.match(n2.donor.status(), { state: 'wait_health_check', coordinator_node: 'n1@h', recipients: ['n4@h'], stats: { initial_connected: 1000, current_disconnected_sessions: 300 } });
  await sim.run(2900);
  t.equal(n1.evictedAt.length, 0, 'nothing evicted during wait_health_check');
  await sim.run(200);
  t.equal(c.state, 'evicting_conns');
  t.same([n1.allow, n2.allow, n3.allow], [false, false, false], 'donors refuse after the health-check wait');
  let lowest = Infinity;
  for (let i = 0; i < 3000 && c.state !== null; i++) {
    if (states.at(-1) !== c.state) states.push(c.state);
    await sim.run(10);
    lowest = Math.min(lowest, n1.conns, n2.conns, n3.conns);
  }
  states.push(c.state);
  t.same(states, ['evicting_conns', 'wait_takeover', 'evicting_sessions', null], 'the states in order, then gone');
  t.equal(total(), 3000, 'every evicted client is back');
  for (const n of [n1, n2, n3]) t.ok(n.conns >= 740 && n.conns <= 760, `${n.name} ends near the mean: ${n.conns}`);
  t.ok(n4.conns >= 720 && n4.conns <= 780, `recipient ends near the mean: ${n4.conns}`);
  t.ok(lowest >= 749, `no donor went below the mean (lowest ${lowest})`);
  const times = n1.evictedAt;
  const rate = ((times.length - 1) * 1000) / ((times.at(-1) as number) - (times[0] as number));
  t.ok(times.length < 10 || Math.abs(rate - 500) <= 25, `n1 evicted ${times.length} at ${rate.toFixed(0)}/s`);
  t.ok(n4.disconnected > 0 && n1.disconnected < 300, `sessions moved: n1 ${n1.disconnected}, n4 ${n4.disconnected}`);
  t.same([n1.kind, n2.kind, n3.kind, n1.allow], [null, null, null, true], 'donors accept connections again');
  t.equal(n1.donor.status(), null);
});

t.test('errors: nothing_to_balance, already_started, not_started, eviction_agent_busy leaves no donor enabled', async (t) => {
  const balanced = new Sim([50, 0]);
  await t.rejects(coordinatorOf(balanced).start(opts({ absConnThreshold: 50, absSessThreshold: 50 }), ['n1@h', 'n2@h']), { code: 'nothing_to_balance' });
  await t.rejects(coordinatorOf(balanced).start(opts({ absConnThreshold: 1 }), ['n1@h']), { code: 'nothing_to_balance' }, 'a single node');

  const sim = new Sim([100, 100, 0]);
  const c = coordinatorOf(sim);
  await t.rejects(c.stop(), { code: 'not_started' });
  sim.node('n2@h').kind = 'evacuation';
  await t.rejects(c.start(opts({ absConnThreshold: 10 }), ['n1@h', 'n2@h', 'n3@h']), { code: 'eviction_agent_busy' });
  t.equal(sim.node('n1@h').kind, null, 'the donor enabled before the busy one was released');
  t.equal(c.status(), null);
  sim.node('n2@h').kind = null;
  const started = c.start(opts({ absConnThreshold: 10 }), ['n1@h', 'n2@h', 'n3@h']);
  await t.rejects(c.start(opts({ absConnThreshold: 10 }), ['n1@h', 'n2@h', 'n3@h']), { code: 'already_started' }, 'while starting');
  await started;
  await t.rejects(c.start(opts({ absConnThreshold: 10 }), ['n1@h', 'n2@h', 'n3@h']), { code: 'already_started' });
  const other = coordinatorOf(sim, 'n3@h');
  await t.rejects(other.start(opts({ absConnThreshold: 10 }), ['n1@h', 'n2@h', 'n3@h']), { code: 'eviction_agent_busy' }, 'a second coordinator finds the donors busy');
  await c.stop();
  t.same([sim.node('n1@h').kind, sim.node('n2@h').kind, c.status()], [null, null, null], 'stop: donors back to normal');
});

t.test('a participant fails mid-rebalance: aborted everywhere, donors accept again', async (t) => {
  const sim = new Sim([1000, 1000, 0]);
  sim.reconnectMs = 60_000; // clients stay away: eviction goes on until the failure
  const c = coordinatorOf(sim);
  await c.start(opts({ absConnThreshold: 100, connEvictRate: 10, waitHealthCheck: 0 }), ['n1@h', 'n2@h', 'n3@h']);
  await sim.run(2000);
  t.equal(c.state, 'evicting_conns');
  t.equal(sim.node('n1@h').allow, false);
  sim.node('n3@h').up = false; // the recipient is killed
  await sim.run(1100, () => c.state === null);
  t.equal(c.state, null, 'aborted within a tick');
  t.same([sim.node('n1@h').kind, sim.node('n2@h').kind, sim.node('n1@h').allow], [null, null, true], 'donors accept connections again');
  const evicted = sim.node('n1@h').evictedAt.length;
  await sim.run(2000);
  t.equal(sim.node('n1@h').evictedAt.length, evicted, 'no eviction after the abort');
});

t.test('a donor whose coordinator goes quiet or down gives up on its own within the heartbeat timeout', async (t) => {
  const sim = new Sim([1000, 0]);
  const c = coordinatorOf(sim, 'n2@h');
  await c.start(opts({ absConnThreshold: 10, waitHealthCheck: 60 }), ['n1@h', 'n2@h']);
  const donor = sim.node('n1@h');
  t.equal(donor.kind, 'rebalance');
  c.close(); // the coordinator's process stops ticking; its link is still up
  await sim.run(LEASE_MS - 600);
  t.equal(donor.kind, 'rebalance', 'still a donor before the timeout');
  await sim.run(1200);
  t.equal(donor.kind, null, `given up ${LEASE_MS} ms after the last sync`);

  const sim2 = new Sim([1000, 0]);
  const c2 = coordinatorOf(sim2, 'n2@h');
  await c2.start(opts({ absConnThreshold: 10, waitHealthCheck: 60 }), ['n1@h', 'n2@h']);
  sim2.node('n2@h').up = false; // its link goes down
  await sim2.run(600);
  t.equal(sim2.node('n1@h').kind, null, 'given up as soon as the link is down');
  t.throws(() => sim2.node('n1@h').donor.sync(sim2.lastSync as DonorSync), { code: 'not_started' }, 'a late sync of that run does not enable it again');
  t.equal(sim2.node('n1@h').kind, null);
});
