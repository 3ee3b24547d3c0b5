// The cluster rebalance coordinator (SPEC 7, seed evacuation-and-rebalance): runs on any node,
// which need not take part. Start reads every participant's counts and splits donors from
// recipients by the mean connection count (plan.ts). Then, once a tick, it reads every
// participant's counts again and syncs each donor (donor.ts):
//   wait_health_check (donors 503, still accepting) -> evicting_conns (donors refuse; those above
//   the target evict at the rate, no redirect) -> wait_takeover -> evicting_sessions (donors move
//   disconnected sessions to random recipients) -> done: donors released, the run is gone.
// Not persisted. Any failed or timed-out read or sync aborts the run on every node.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { DonorSync, ParticipantReport } from './donor.js';
import { RebalanceError } from './errors.js';
import type { RebalanceOptions } from './options.js';
import { avg, connThresholds, evictionTarget, planRebalance, sessThresholds, withinThresholds } from './plan.js';

export const REBALANCE_STATES = ['wait_health_check', 'evicting_conns', 'wait_takeover', 'evicting_sessions'] as const;
export type RebalanceState = (typeof REBALANCE_STATES)[number];

/** The coordinator reads and syncs this often. */
export const TICK_MS = 1000;
/** An eviction instruction covers this long: donors keep evicting evenly until the next one arrives. */
const EVICT_WINDOW_MS = 1500;
/**
 * Evicted clients not back on a recipient count as reconnecting (donors stop at the mean with them
 * counted) for this long at most; after that they count as gone and donors may evict further.
 */
const RECONNECT_GRACE_MS = 10_000;
/** evicting_sessions ends when no donor's disconnected sessions moved for this many ticks. */
const STALL_TICKS = 5;

/** How the coordinator reaches each participant: local calls for itself, RPCs for the others. */
export interface Participants {
  report(node: string): Promise<ParticipantReport>;
  sync(node: string, s: DonorSync): Promise<void>;
  release(node: string, coordinator: string, id: string): Promise<void>;
}

export interface CoordinatorHost {
  readonly node: string;
  readonly participants: Participants;
  readonly clock: Clock;
  readonly log: Logger;
}

/** A rebalance entry of `global_status` without `node` (SPEC 8); goals and averages are floats. */
export interface CoordinatorStatus {
  state: RebalanceState;
  coordinator_node: string;
  connection_eviction_rate: number;
  session_eviction_rate: number;
  donors: string[];
  recipients: string[];
  connection_goal: number;
  disconnected_session_goal: number;
  donor_conn_avg: number;
  donor_sess_avg: number;
}

interface Run {
  readonly id: string;
  readonly options: RebalanceOptions;
  readonly nodes: readonly string[];
  readonly donors: readonly string[];
  readonly recipients: readonly string[];
  readonly initial: ReadonlyMap<string, ParticipantReport>;
  state: RebalanceState;
  enteredAt: number;
  timer: unknown;
  donorConnAvg: number;
  recipientConnAvg: number;
  donorSessAvg: number;
  recipientSessAvg: number;
  /** Evicted clients given up on as not reconnecting (see RECONNECT_GRACE_MS). */
  lost: number;
  /** Since when no donor had anything to evict while still unbalanced; null: not waiting. */
  idleSince: number | null;
  /** Donors' disconnected sessions at the last tick, and ticks without change. */
  lastDisconnected: number;
  stalled: number;
}

export class RebalanceCoordinator {
  private run: Run | null = null;
  private starting = false;

  constructor(private readonly host: CoordinatorHost) {}

  get state(): RebalanceState | null {
    return this.run?.state ?? null;
  }

  /**
   * Starts a rebalance of `nodes` (running cluster members, checked by the caller). Errors:
   * `already_started`, `nothing_to_balance`, a donor's `eviction_agent_busy`, `rpc_failed`.
   */
  async start(options: RebalanceOptions, nodes: readonly string[]): Promise<void> {
    if (this.run !== null || this.starting) throw new RebalanceError('already_started', 'already_started');
    this.starting = true;
    try {
      const { participants, clock, log } = this.host;
      const reports = await Promise.all(nodes.map((n) => participants.report(n)));
      const plan = planRebalance(reports, options);
      const initial = new Map(reports.map((r) => [r.node, r]));
      const disconnectedAvg = (ns: readonly string[]): number => avg(ns.map((n) => (initial.get(n) as ParticipantReport).disconnected));
      const run: Run = {
        id: randomUUID(),
        options,
        nodes: [...nodes],
        donors: plan.donors,
        recipients: plan.recipients,
        initial,
        state: 'wait_health_check',
        enteredAt: clock.now(),
        timer: null,
        donorConnAvg: plan.donorConnAvg,
        recipientConnAvg: plan.recipientConnAvg,
        donorSessAvg: disconnectedAvg(plan.donors),
        recipientSessAvg: disconnectedAvg(plan.recipients),
        lost: 0,
        idleSince: null,
        lastDisconnected: -1,
        stalled: 0,
      };
      // All donors or none: one that cannot (evacuating, another rebalance, down) fails the start.
      const enabled = await Promise.allSettled(run.donors.map((d) => participants.sync(d, this.syncOf(run, d, null))));
      const failed = enabled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) {
        await this.releaseAll(run);
        throw failed.reason;
      }
      this.run = run;
      log.warn(
        { id: run.id, donors: run.donors, recipients: run.recipients, donor_conn_avg: run.donorConnAvg, recipient_conn_avg: run.recipientConnAvg, options },
        'rebalance started',
      );
      this.schedule(run, Math.min(TICK_MS, options.waitHealthCheck * 1000));
    } finally {
      this.starting = false;
    }
  }

  /** Stops the rebalance: every donor accepts connections again. Error: `not_started`. */
  async stop(): Promise<void> {
    const run = this.run;
    if (run === null) throw new RebalanceError('not_started', 'not_started');
    await this.end(run, 'warn', 'rebalance stopped');
  }

  /** Node shutdown: timers off; donors give up on their own when this node's link goes. */
  close(): void {
    const run = this.run;
    if (run?.timer != null) this.host.clock.clearTimer(run.timer);
    this.run = null;
  }

  status(): CoordinatorStatus | null {
    const run = this.run;
    if (run === null) return null;
    return {
      state: run.state,
      coordinator_node: this.host.node,
      connection_eviction_rate: run.options.connEvictRate,
      session_eviction_rate: run.options.sessEvictRate,
      donors: [...run.donors],
      recipients: [...run.recipients],
      connection_goal: run.recipientConnAvg,
      disconnected_session_goal: run.recipientSessAvg,
      donor_conn_avg: run.donorConnAvg,
      donor_sess_avg: run.donorSessAvg,
    };
  }

  private schedule(run: Run, ms: number): void {
    run.timer = this.host.clock.setTimer(() => {
      run.timer = null;
      void this.tick(run);
    }, ms);
  }

  private syncOf(run: Run, donor: string, evict: DonorSync['evict']): DonorSync {
    const initial = run.initial.get(donor) as ParticipantReport;
    return {
      coordinator: this.host.node,
      id: run.id,
      state: run.state,
      connEvictRate: run.options.connEvictRate,
      sessEvictRate: run.options.sessEvictRate,
      recipients: run.recipients,
      initial: { connected: initial.connections, sessions: initial.sessions },
      connectionGoal: run.recipientConnAvg,
      sessionGoal: run.recipientSessAvg,
      evict,
    };
  }

  private async tick(run: Run): Promise<void> {
    const { participants } = this.host;
    try {
      const reports = await Promise.all(run.nodes.map((n) => participants.report(n)));
      if (this.run !== run) return;
      const evict = this.step(run, new Map(reports.map((r) => [r.node, r])));
      if (evict === null) return this.end(run, 'warn', 'rebalance done');
      await Promise.all(run.donors.map((d) => participants.sync(d, this.syncOf(run, d, evict.get(d) ?? null))));
      if (this.run === run) this.schedule(run, TICK_MS);
    } catch (err) {
      if (this.run === run) await this.end(run, 'error', 'rebalance aborted: a participant failed', err);
    }
  }

  private enter(run: Run, state: RebalanceState, now: number): void {
    run.state = state;
    run.enteredAt = now;
    this.host.log.warn({ state, donor_conn_avg: run.donorConnAvg, recipient_conn_avg: run.recipientConnAvg }, 'rebalance state');
  }

  /** One tick's decisions from fresh counts: the donors' instructions, or null when done. */
  private step(run: Run, by: ReadonlyMap<string, ParticipantReport>): Map<string, DonorSync['evict']> | null {
    const now = this.host.clock.now();
    const o = run.options;
    const of = (ns: readonly string[]): ParticipantReport[] => ns.map((n) => by.get(n) as ParticipantReport);
    const donors = of(run.donors);
    const recipients = of(run.recipients);
    const evict = new Map<string, DonorSync['evict']>();
    run.donorConnAvg = avg(donors.map((r) => r.connections));
    run.recipientConnAvg = avg(recipients.map((r) => r.connections));
    if (run.state === 'wait_health_check' && now - run.enteredAt >= o.waitHealthCheck * 1000) this.enter(run, 'evicting_conns', now);
    if (run.state === 'evicting_conns') {
      if (withinThresholds(run.donorConnAvg, run.recipientConnAvg, connThresholds(o))) {
        this.enter(run, 'wait_takeover', now);
      } else {
        const target = evictionTarget([...by.values()].map((r) => r.connections), this.reconnecting(run, donors, recipients));
        for (const d of donors) if (d.connections > target) evict.set(d.node, { target, ms: EVICT_WINDOW_MS });
        this.giveUpOnReconnects(run, evict.size === 0, donors, recipients, now);
        return evict;
      }
    }
    if (run.state === 'wait_takeover' && now - run.enteredAt >= o.waitTakeover * 1000) this.enter(run, 'evicting_sessions', now);
    if (run.state === 'evicting_sessions') {
      const left = donors.map((r) => r.disconnected - r.moving);
      run.donorSessAvg = avg(donors.map((r) => r.disconnected));
      run.recipientSessAvg = avg(recipients.map((r) => r.disconnected));
      if (withinThresholds(run.donorSessAvg, run.recipientSessAvg, sessThresholds(o))) return null;
      const total = left.reduce((a, b) => a + b, 0);
      run.stalled = total === run.lastDisconnected && donors.every((r) => r.moving === 0) ? run.stalled + 1 : 0;
      run.lastDisconnected = total;
      if (run.stalled >= STALL_TICKS) {
        this.host.log.warn({ donor_sess_avg: run.donorSessAvg, recipient_sess_avg: run.recipientSessAvg }, 'rebalance: the sessions left cannot move');
        return null;
      }
      const target = evictionTarget(
        [...by.values()].map((r) => r.disconnected - r.moving),
        0,
      );
      donors.forEach((d, i) => {
        if ((left[i] as number) > target) evict.set(d.node, { target, ms: EVICT_WINDOW_MS });
      });
    }
    return evict;
  }

  /** Evicted connections not (yet) seen on a recipient: clients on their way back. */
  private reconnecting(run: Run, donors: readonly ParticipantReport[], recipients: readonly ParticipantReport[]): number {
    let evicted = 0;
    for (const d of donors) evicted += d.evicted - (run.initial.get(d.node) as ParticipantReport).evicted;
    let arrived = 0;
    for (const r of recipients) arrived += r.connections - (run.initial.get(r.node) as ParticipantReport).connections;
    return Math.max(0, evicted - arrived - run.lost);
  }

  /** Still unbalanced with nothing to evict for RECONNECT_GRACE_MS: the clients not back are gone. */
  private giveUpOnReconnects(run: Run, idle: boolean, donors: readonly ParticipantReport[], recipients: readonly ParticipantReport[], now: number): void {
    if (!idle) {
      run.idleSince = null;
      return;
    }
    run.idleSince ??= now;
    if (now - run.idleSince < RECONNECT_GRACE_MS) return;
    run.lost += this.reconnecting(run, donors, recipients);
    run.idleSince = null;
  }

  /** Ends the run: donors released (a donor that does not answer gives up on its own). */
  private async end(run: Run, level: 'warn' | 'error', msg: string, err?: unknown): Promise<void> {
    if (run.timer !== null) this.host.clock.clearTimer(run.timer);
    run.timer = null;
    if (this.run === run) this.run = null;
    this.host.log[level]({ id: run.id, ...(err === undefined ? {} : { err }) }, msg);
    await this.releaseAll(run);
  }

  private async releaseAll(run: Run): Promise<void> {
    const { participants, node } = this.host;
    await Promise.allSettled(run.donors.map((d) => participants.release(d, node, run.id)));
  }
}
