// The evacuation state machine on a fake clock with a fake agent: every state of SPEC 6 in order,
// the rate, stop at any time, the errors, persistence and resume.
import { pino } from 'pino';
import t from 'tap';
import { RebalanceError } from '../../src/rebalance/errors.js';
import { Evacuation, NODES_RETRY_MS, type EvacuationHost, type PersistedEvacuation } from '../../src/rebalance/evacuation.js';
import type { EvictionKind } from '../../src/rebalance/eviction-agent.js';
import { EVACUATION_DEFAULTS, type EvacuationOptions } from '../../src/rebalance/options.js';
import { FakeClock } from './fake-clock.js';

class FakeAgent {
  kind: EvictionKind | null = null;
  allow = true;
  redirect: string | undefined;
  conns = 0;
  sessions = 0;
  evictedAt: number[] = [];
  moved: Array<[number, readonly string[]]> = [];
  constructor(private readonly clock: FakeClock) {}
  enable(kind: EvictionKind, redirect: string | undefined, allow: boolean): void {
    if (this.kind !== null && this.kind !== kind) throw new RebalanceError('eviction_agent_busy', 'eviction_agent_busy');
    this.kind = kind;
    this.redirect = redirect;
    this.allow = allow;
  }
  disable(kind: EvictionKind): void {
    if (this.kind === kind) this.kind = null;
  }
  evictConnections(n: number): number {
    const k = Math.min(n, this.conns);
    this.conns -= k;
    for (let i = 0; i < k; i++) this.evictedAt.push(this.clock.now());
    return k;
  }
  evictSessions(n: number, nodes: readonly string[]): number {
    const k = Math.min(n, this.sessions);
    this.sessions -= k;
    if (k > 0) this.moved.push([k, nodes]);
    return k;
  }
  connectionCount(): number {
    return this.conns;
  }
  sessionCount(): number {
    return this.sessions;
  }
}

function setup(nodes: string[] = ['n2@h', 'n3@h']) {
  const clock = new FakeClock();
  const agent = new FakeAgent(clock);
  const persisted: Array<PersistedEvacuation | null> = [];
  const host = {
    agent,
    clock,
    log: pino({ level: 'silent' }),
    available: nodes,
    recipients(migrateTo: readonly string[] | undefined): string[] {
      return migrateTo === undefined ? [...this.available] : migrateTo.filter((n) => this.available.includes(n));
    },
    persist: async (s: PersistedEvacuation | null) => {
      persisted.push(s);
    },
  };
  const evac = new Evacuation(host as EvacuationHost);
  return { clock, agent, host, evac, persisted };
}

const opts = (o: Partial<EvacuationOptions>): EvacuationOptions => ({ ...EVACUATION_DEFAULTS, ...o });

t.test('evicting_conns -> waiting_takeover -> evicting_sessions -> prohibiting, at the rates', async (t) => {
  const { clock, agent, evac, persisted } = setup();
  agent.conns = 300;
  agent.sessions = 500;
  await evac.start(opts({ connEvictRate: 100, sessEvictRate: 200, waitTakeover: 5, redirectTo: 'h2:1883' }));
  t.equal(evac.state, 'evicting_conns');
  t.same([agent.kind, agent.allow, agent.redirect], ['evacuation', false, 'h2:1883'], 'refusing with the redirect');
  t.same(persisted, [{ redirect_to: 'h2:1883', conn_evict_rate: 100, sess_evict_rate: 200, wait_takeover: 5, wait_health_check: 0 }], 'options stored');
  clock.advance(1000);
  t.ok(Math.abs(agent.evictedAt.length - 100) <= 2, `~100 evicted in the first second (${agent.evictedAt.length})`);
  clock.advance(2100);
  t.equal(agent.conns, 0);
  t.equal(evac.state, 'waiting_takeover', 'no live connection left');
  const tookOver = clock.now();
  agent.sessions = 300; // clients took 200 sessions elsewhere meanwhile
  clock.advance(4900);
  t.equal(evac.state, 'waiting_takeover', 'waits wait_takeover');
  clock.advance(200);
  t.equal(evac.state, 'evicting_sessions');
  t.ok(clock.now() - tookOver >= 5000);
  clock.advance(1000);
  t.equal(evac.state, 'evicting_sessions');
  t.ok(agent.sessions > 0 && agent.sessions <= 110, `~200/s moved (left ${agent.sessions})`);
  t.same(agent.moved[0]?.[1], ['n2@h', 'n3@h'], 'to the other running nodes by default');
  clock.advance(1000);
  t.equal(evac.state, 'prohibiting');
  t.same(evac.status()?.stats, { initial_connected: 300, current_connected: 0, initial_sessions: 500, current_sessions: 0 });
  t.equal(agent.kind, 'evacuation', 'still refusing while prohibiting');
  t.equal(clock.pending, 0, 'nothing scheduled while prohibiting');
  await evac.stop();
  t.equal(agent.kind, null, 'agent disabled: connections accepted, available');
  t.equal(evac.state, null);
  t.equal(persisted.at(-1), null, 'stored evacuation cleared');
});

t.test('waiting_health_check accepts connections, then evicts', async (t) => {
  const { clock, agent, evac } = setup();
  agent.conns = 10;
  await evac.start(opts({ waitHealthCheck: 3 }));
  t.equal(evac.state, 'waiting_health_check');
  t.same([agent.kind, agent.allow], ['evacuation', true], 'unavailable, still accepting');
  clock.advance(2999);
  t.equal(agent.conns, 10, 'nothing evicted yet');
  clock.advance(2);
  t.equal(evac.state, 'evicting_conns');
  t.equal(agent.allow, false, 'refusing now');
});

t.test('no migrate_to node available: retried every 30 s', async (t) => {
  const { clock, agent, host, evac } = setup([]);
  agent.sessions = 5;
  await evac.start(opts({ waitTakeover: 0 }));
  clock.advance(1);
  t.equal(evac.state, 'evicting_sessions');
  clock.advance(NODES_RETRY_MS - 10);
  t.equal(agent.sessions, 5, 'nothing moved without a recipient');
  host.available = ['n2@h'];
  clock.advance(20);
  clock.advance(100);
  t.equal(agent.sessions, 0, 'moved once a node is there');
  clock.advance(100);
  t.equal(evac.state, 'prohibiting');
  t.same(evac.status()?.session_recipients, ['n2@h']);
});

t.test('migrate_to limits the recipients; status shape', async (t) => {
  const { clock, agent, evac } = setup(['n2@h', 'n3@h']);
  agent.sessions = 3;
  agent.conns = 1;
  await evac.start(opts({ migrateTo: ['n3@h'], waitTakeover: 1, connEvictRate: 5, sessEvictRate: 7 }));
  t.same(evac.status(), {
    state: 'evicting_conns',
    connection_eviction_rate: 5,
    session_eviction_rate: 7,
    connection_goal: 0,
    session_goal: 0,
    session_recipients: ['n3@h'],
    stats: { initial_connected: 1, current_connected: 1, initial_sessions: 3, current_sessions: 3 },
  });
  clock.advance(5000);
  t.ok(agent.moved.length > 0 && agent.moved.every(([, nodes]) => nodes.length === 1 && nodes[0] === 'n3@h'), 'only to n3');
});

t.test('errors: already_started, not_started, eviction_agent_busy; stop at any state', async (t) => {
  const { clock, agent, evac } = setup();
  await t.rejects(evac.stop(), { code: 'not_started', message: 'not_started' });
  agent.conns = 1000;
  await evac.start(opts({}));
  await t.rejects(evac.start(opts({})), { code: 'already_started' });
  clock.advance(100);
  await evac.stop();
  const evicted = agent.evictedAt.length;
  clock.advance(10_000);
  t.equal(agent.evictedAt.length, evicted, 'no eviction after stop');
  t.equal(clock.pending, 0);
  agent.enable('rebalance', undefined, false);
  await t.rejects(evac.start(opts({})), { code: 'eviction_agent_busy' });
  t.equal(evac.state, null);
});

t.test('resume: a stored evacuation refuses at once and continues at evicting_conns; junk is ignored', async (t) => {
  const { clock, agent, evac } = setup();
  t.notOk(evac.resume(undefined), 'nothing stored');
  t.notOk(evac.resume(null), 'stopped');
  t.notOk(evac.resume({ conn_evict_rate: 'x' }), 'not an evacuation');
  agent.conns = 2;
  t.ok(evac.resume({ redirect_to: null, conn_evict_rate: 10, sess_evict_rate: 10, wait_takeover: 1, wait_health_check: 30 }));
  t.equal(evac.state, 'evicting_conns', 'not waiting_health_check again');
  t.same([agent.kind, agent.allow], ['evacuation', false]);
  clock.advance(500);
  t.equal(evac.state, 'waiting_takeover');
  clock.advance(1000);
  t.equal(evac.state, 'prohibiting', 'no session to move');
});
