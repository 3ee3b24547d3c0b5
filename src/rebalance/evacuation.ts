// Node evacuation (SPEC 6, seed evacuation-and-rebalance): a state machine over the local eviction
// agent. waiting_health_check (503, still accepting) -> evicting_conns (refusing; connections
// evicted at conn_evict_rate until none is live) -> waiting_takeover (wait_takeover s for clients
// to take their sessions elsewhere) -> evicting_sessions (the rest moved to migrate_to nodes at
// sess_evict_rate; none available: retry every 30 s) -> prohibiting (done, still refusing) until
// stop. The options (not migrate_to) are persisted: a restarted node resumes at evicting_conns.
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import { RebalanceError } from './errors.js';
import type { EvictionAgent } from './eviction-agent.js';
import type { EvacuationOptions } from './options.js';
import { EvenScheduler } from './scheduler.js';

export const EVACUATION_STATES = ['waiting_health_check', 'evicting_conns', 'waiting_takeover', 'evicting_sessions', 'prohibiting'] as const;
export type EvacuationState = (typeof EVACUATION_STATES)[number];

/** With no migrate_to node available, sessions are tried again this often. */
export const NODES_RETRY_MS = 30_000;

/** What is persisted (SPEC 6: the options, not migrate_to), with EMQX's option names. */
export interface PersistedEvacuation {
  readonly redirect_to: string | null;
  readonly conn_evict_rate: number;
  readonly sess_evict_rate: number;
  readonly wait_takeover: number;
  readonly wait_health_check: number;
}

/** What the evacuation needs beside the agent. */
export interface EvacuationHost {
  readonly agent: Pick<EvictionAgent, 'enable' | 'disable' | 'evictConnections' | 'evictSessions' | 'connectionCount' | 'sessionCount'>;
  readonly clock: Clock;
  readonly log: Logger;
  /** Nodes that can take sessions now: running, not this one, of `migrateTo` when given. */
  recipients(migrateTo: readonly string[] | undefined): string[];
  /** Stores the evacuation (null: none); resolves when durable. */
  persist(state: PersistedEvacuation | null): Promise<void>;
}

/** EMQX's local evacuation status (SPEC 8), without `status`/`process` (the caller adds them). */
export interface EvacuationStatus {
  state: EvacuationState;
  connection_eviction_rate: number;
  session_eviction_rate: number;
  connection_goal: 0;
  session_goal: 0;
  session_recipients: string[];
  stats: { initial_connected: number; current_connected: number; initial_sessions: number; current_sessions: number };
}

function toPersisted(o: EvacuationOptions): PersistedEvacuation {
  return {
    redirect_to: o.redirectTo ?? null,
    conn_evict_rate: o.connEvictRate,
    sess_evict_rate: o.sessEvictRate,
    wait_takeover: o.waitTakeover,
    wait_health_check: o.waitHealthCheck,
  };
}

/** A stored evacuation back as options; undefined for anything that is not one (never stored, or stopped). */
function fromPersisted(v: unknown): EvacuationOptions | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const p = v as Partial<PersistedEvacuation>;
  const int = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
  if (!int(p.conn_evict_rate) || !int(p.sess_evict_rate) || !int(p.wait_takeover) || !int(p.wait_health_check)) return undefined;
  if (p.conn_evict_rate === 0 || p.sess_evict_rate === 0) return undefined;
  return {
    redirectTo: typeof p.redirect_to === 'string' ? p.redirect_to : undefined,
    connEvictRate: p.conn_evict_rate,
    sessEvictRate: p.sess_evict_rate,
    waitTakeover: p.wait_takeover,
    waitHealthCheck: p.wait_health_check,
    migrateTo: undefined,
  };
}

export class Evacuation {
  private current: EvacuationState | null = null;
  private options: EvacuationOptions | null = null;
  private initial = { connected: 0, sessions: 0 };
  private scheduler: EvenScheduler | null = null;
  private timer: unknown = null;
  /** Bumped on every start/stop: a stale persist or timer of an earlier run does nothing. */
  private run = 0;

  constructor(private readonly host: EvacuationHost) {}

  get state(): EvacuationState | null {
    return this.current;
  }

  /** Starts evacuating this node. Errors: `already_started`, `eviction_agent_busy`. */
  async start(options: EvacuationOptions): Promise<void> {
    if (this.current !== null) throw new RebalanceError('already_started', 'already_started');
    const { agent } = this.host;
    // Throws eviction_agent_busy while a rebalance uses the agent.
    agent.enable('evacuation', options.redirectTo, options.waitHealthCheck > 0);
    this.begin(options);
    // Started from here on (a second start fails), though eviction waits for the store.
    this.current = options.waitHealthCheck > 0 ? 'waiting_health_check' : 'evicting_conns';
    const run = this.run;
    this.host.log.warn({ options: toPersisted(options), migrate_to: options.migrateTo ?? 'all other nodes' }, 'evacuation started');
    try {
      await this.host.persist(toPersisted(options));
    } catch (err) {
      // Not stored: running it would not survive a restart as promised, so it does not run.
      if (this.run === run) this.halt();
      throw err;
    }
    if (this.run !== run) return; // stopped while the store wrote
    if (options.waitHealthCheck > 0) this.enter('waiting_health_check');
    else this.enter('evicting_conns');
  }

  /**
   * At start, before the listeners accept: a stored evacuation refuses connections from the first
   * one and continues at evicting_conns (SPEC 6). Returns whether one was resumed.
   */
  resume(stored: unknown): boolean {
    const options = fromPersisted(stored);
    if (options === undefined) return false;
    this.host.agent.enable('evacuation', options.redirectTo, false);
    this.begin(options);
    this.host.log.warn({ options: stored }, 'evacuation is on: connections are refused, resuming at evicting_conns');
    this.enter('evicting_conns');
    return true;
  }

  /** Stops at any state: connections accepted again, available again; nothing is undone. Error: `not_started`. */
  async stop(): Promise<void> {
    if (this.current === null) throw new RebalanceError('not_started', 'not_started');
    this.halt();
    this.host.log.warn('evacuation stopped');
    await this.host.persist(null);
  }

  /** Timers off, without touching the store (node shutdown: a stored evacuation resumes). */
  close(): void {
    this.clearWork();
  }

  status(): EvacuationStatus | null {
    const state = this.current;
    const o = this.options;
    if (state === null || o === null) return null;
    const { agent } = this.host;
    return {
      state,
      connection_eviction_rate: o.connEvictRate,
      session_eviction_rate: o.sessEvictRate,
      connection_goal: 0,
      session_goal: 0,
      session_recipients: o.migrateTo === undefined ? this.host.recipients(undefined) : [...o.migrateTo],
      stats: {
        initial_connected: this.initial.connected,
        current_connected: agent.connectionCount(),
        initial_sessions: this.initial.sessions,
        current_sessions: agent.sessionCount(),
      },
    };
  }

  private begin(options: EvacuationOptions): void {
    this.run++;
    this.options = options;
    this.initial = { connected: this.host.agent.connectionCount(), sessions: this.host.agent.sessionCount() };
  }

  private halt(): void {
    this.run++;
    this.clearWork();
    this.current = null;
    this.options = null;
    this.host.agent.disable('evacuation');
  }

  private clearWork(): void {
    this.scheduler?.stop();
    this.scheduler = null;
    if (this.timer !== null) this.host.clock.clearTimer(this.timer);
    this.timer = null;
  }

  private after(ms: number, next: () => void): void {
    this.timer = this.host.clock.setTimer(() => {
      this.timer = null;
      next();
    }, ms);
  }

  private enter(state: EvacuationState): void {
    this.clearWork();
    this.current = state;
    this.host.log.info({ state }, 'evacuation state');
    const o = this.options as EvacuationOptions;
    const { agent, clock } = this.host;
    switch (state) {
      case 'waiting_health_check':
        this.after(o.waitHealthCheck * 1000, () => this.enter('evicting_conns'));
        return;
      case 'evicting_conns':
        agent.enable('evacuation', o.redirectTo, false);
        if (agent.connectionCount() === 0) return this.enter('waiting_takeover');
        this.scheduler = new EvenScheduler(
          o.connEvictRate,
          (n) => {
            if (agent.evictConnections(n) === n) return true;
            this.enter('waiting_takeover'); // none left
            return false;
          },
          clock,
        );
        this.scheduler.start();
        return;
      case 'waiting_takeover':
        this.after(o.waitTakeover * 1000, () => this.enter('evicting_sessions'));
        return;
      case 'evicting_sessions':
        this.evictSessions(o);
        return;
      case 'prohibiting':
        this.host.log.warn('evacuation done: no connections or sessions left; refusing connections until stopped');
        return;
    }
  }

  private evictSessions(o: EvacuationOptions): void {
    const { agent, clock } = this.host;
    if (agent.sessionCount() === 0) return this.enter('prohibiting');
    if (this.host.recipients(o.migrateTo).length === 0) {
      this.host.log.warn({ migrate_to: o.migrateTo ?? 'all other nodes', retry_ms: NODES_RETRY_MS }, 'evacuation: no node available to take sessions');
      this.after(NODES_RETRY_MS, () => this.evictSessions(o));
      return;
    }
    this.scheduler = new EvenScheduler(
      o.sessEvictRate,
      (n) => {
        if (agent.sessionCount() === 0) {
          this.enter('prohibiting');
          return false;
        }
        const nodes = this.host.recipients(o.migrateTo);
        if (nodes.length === 0) {
          this.scheduler = null;
          this.evictSessions(o);
          return false;
        }
        agent.evictSessions(n, nodes);
        return true;
      },
      clock,
    );
    this.scheduler.start();
  }
}
