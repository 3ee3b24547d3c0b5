// A rebalance donor (SPEC 7): this node's eviction agent lent to a coordinator, which may be on
// another node. The coordinator syncs each donor once a tick (state, goals, what to evict until
// the next tick); the donor paces the evictions itself with an EvenScheduler. The sync is also a
// lease: a donor that hears nothing for the cluster's heartbeat timeout, or whose coordinator's
// link is down, gives up on its own and accepts connections again.
import type { Logger } from 'pino';
import { FAILURE_MS } from '../cluster/cluster.js';
import type { Clock } from './clock.js';
import type { RebalanceState } from './coordinator.js';
import { RebalanceError } from './errors.js';
import type { EvictionAgent } from './eviction-agent.js';
import { evictionBudget, type NodeCounts } from './plan.js';
import { EvenScheduler } from './scheduler.js';

/** A donor without a sync for this long gives up: the cluster's heartbeat timeout. */
export const LEASE_MS = FAILURE_MS;
/** How often the lease is checked. */
const LEASE_CHECK_MS = 500;
/** Runs this donor left, remembered so a sync that was on its way cannot enable it again. */
const ENDED_KEPT = 16;

/** What the coordinator tells a donor each tick. */
export interface DonorSync {
  readonly coordinator: string;
  /** The rebalance run: a sync of another run while this one holds the agent is `eviction_agent_busy`. */
  readonly id: string;
  readonly state: RebalanceState;
  readonly connEvictRate: number;
  readonly sessEvictRate: number;
  readonly recipients: readonly string[];
  /** This donor's counts when the rebalance started. */
  readonly initial: { readonly connected: number; readonly sessions: number };
  /** The recipients' average connections and disconnected sessions (the status' goals). */
  readonly connectionGoal: number;
  readonly sessionGoal: number;
  /**
   * Evict down to `target` (connections in evicting_conns, disconnected sessions in
   * evicting_sessions), at the rate, for at most `ms`; null: nothing until the next sync.
   */
  readonly evict: { readonly target: number; readonly ms: number } | null;
}

/** A participant's counts as the coordinator reads them each tick. */
export interface ParticipantReport extends NodeCounts {
  /** Connections this node evicted for rebalances since it started (cumulative). */
  readonly evicted: number;
  /** Session moves under way. */
  readonly moving: number;
}

/** `GET /load_rebalance/status` of a donor, without `status`/`process` (SPEC 8). */
export interface DonorStatus {
  state: RebalanceState;
  coordinator_node: string;
  connection_eviction_rate: number;
  session_eviction_rate: number;
  connection_goal: number;
  disconnected_session_goal: number;
  recipients: string[];
  stats: {
    initial_connected: number;
    current_connected: number;
    initial_sessions: number;
    current_sessions: number;
    current_disconnected_sessions: number;
  };
}

type Agent = Pick<
  EvictionAgent,
  'enable' | 'disable' | 'evictConnections' | 'evictSessions' | 'connectionCount' | 'sessionCount' | 'disconnectedSessionCount' | 'movesInFlight' | 'evicted'
>;

export interface DonorHost {
  readonly node: string;
  readonly agent: Agent;
  readonly clock: Clock;
  readonly log: Logger;
  /** Whether `node` (the coordinator) is this node or a member whose link is up. */
  reachable(node: string): boolean;
}

/** What a participant reports to the coordinator. */
export function reportOf(node: string, agent: Agent): ParticipantReport {
  return {
    node,
    connections: agent.connectionCount(),
    sessions: agent.sessionCount(),
    disconnected: agent.disconnectedSessionCount(),
    evicted: agent.evicted.rebalance.connections,
    moving: agent.movesInFlight,
  };
}

export class RebalanceDonor {
  private current: DonorSync | null = null;
  private lastSync = 0;
  private scheduler: EvenScheduler | null = null;
  private watchdog: unknown = null;
  private readonly ended: string[] = [];

  constructor(private readonly host: DonorHost) {}

  get state(): RebalanceState | null {
    return this.current?.state ?? null;
  }

  /**
   * Applies a coordinator's sync. The first one enables the agent (503 at once; connections still
   * accepted in wait_health_check, refused after). Errors: `eviction_agent_busy` while evacuating
   * or a donor of another rebalance.
   */
  sync(s: DonorSync): void {
    const cur = this.current;
    if (cur !== null && (cur.coordinator !== s.coordinator || cur.id !== s.id)) throw new RebalanceError('eviction_agent_busy', 'eviction_agent_busy');
    if (this.ended.includes(s.id)) throw new RebalanceError('not_started', 'this donor left that rebalance');
    const { agent, clock, log } = this.host;
    // Evictions carry no Server Reference: clients find recipients through the load balancer.
    agent.enable('rebalance', undefined, s.state === 'wait_health_check');
    if (cur === null) {
      log.warn({ coordinator: s.coordinator, recipients: s.recipients }, 'rebalance donor: unavailable to load balancers');
      this.armWatchdog();
    } else if (cur.state !== s.state) log.info({ state: s.state }, 'rebalance donor state');
    this.current = s;
    this.lastSync = clock.now();
    this.evict(s);
  }

  /** The coordinator is done with this donor (finished, stopped or aborted). */
  release(coordinator: string, id: string): void {
    const cur = this.current;
    if (cur === null || cur.coordinator !== coordinator || cur.id !== id) return;
    this.halt('released by the coordinator');
  }

  status(): DonorStatus | null {
    const s = this.current;
    if (s === null) return null;
    const { agent } = this.host;
    return {
      state: s.state,
      coordinator_node: s.coordinator,
      connection_eviction_rate: s.connEvictRate,
      session_eviction_rate: s.sessEvictRate,
      connection_goal: s.connectionGoal,
      disconnected_session_goal: s.sessionGoal,
      recipients: [...s.recipients],
      stats: {
        initial_connected: s.initial.connected,
        current_connected: agent.connectionCount(),
        initial_sessions: s.initial.sessions,
        current_sessions: agent.sessionCount(),
        current_disconnected_sessions: agent.disconnectedSessionCount(),
      },
    };
  }

  /** Node shutdown. */
  close(): void {
    if (this.current !== null) this.halt('node stopping');
  }

  private halt(why: string): void {
    if (this.current !== null) this.ended.push(this.current.id);
    if (this.ended.length > ENDED_KEPT) this.ended.shift();
    this.scheduler?.stop();
    this.scheduler = null;
    if (this.watchdog !== null) this.host.clock.clearTimer(this.watchdog);
    this.watchdog = null;
    this.current = null;
    this.host.agent.disable('rebalance');
    this.host.log.warn({ why }, 'rebalance donor: accepting connections again');
  }

  private armWatchdog(): void {
    const { clock } = this.host;
    this.watchdog = clock.setTimer(() => {
      this.watchdog = null;
      const cur = this.current;
      if (cur === null) return;
      if (!this.host.reachable(cur.coordinator)) return this.halt(`coordinator ${cur.coordinator} is down`);
      if (clock.now() - this.lastSync > LEASE_MS) return this.halt(`no word from coordinator ${cur.coordinator} for ${LEASE_MS} ms`);
      this.armWatchdog();
    }, LEASE_CHECK_MS);
  }

  /** Replaces what is being evicted with this sync's instruction. */
  private evict(s: DonorSync): void {
    this.scheduler?.stop();
    this.scheduler = null;
    const e = s.evict;
    if (e === null) return;
    const { agent, clock } = this.host;
    if (s.state === 'evicting_conns') {
      let budget = evictionBudget(agent.connectionCount(), e.target, s.connEvictRate, e.ms);
      if (budget === 0) return;
      this.scheduler = new EvenScheduler(
        s.connEvictRate,
        (n) => {
          const k = Math.min(n, budget);
          const done = agent.evictConnections(k);
          budget -= done;
          return budget > 0 && done === k;
        },
        clock,
      );
    } else if (s.state === 'evicting_sessions') {
      // Sessions being moved are still here: they count as gone already.
      let budget = evictionBudget(agent.disconnectedSessionCount() - agent.movesInFlight, e.target, s.sessEvictRate, e.ms);
      if (budget === 0) return;
      this.scheduler = new EvenScheduler(
        s.sessEvictRate,
        (n) => {
          budget -= agent.evictSessions(Math.min(n, budget), s.recipients);
          return budget > 0;
        },
        clock,
      );
    }
    this.scheduler?.start();
  }
}
