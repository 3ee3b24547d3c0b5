// The eviction agent (SPEC 5): one per node. While enabled the node reports itself unavailable to
// load balancers, optionally refuses new connections (before authentication, CONNACK 0x9C with a
// Server Reference / 3.x return code 3), and evicts connections and sessions when its owner (an
// evacuation, or a rebalance donor driven by a coordinator) asks. It holds no schedule itself: the
// owner paces it with an EvenScheduler.
import type { Broker, ConnectRefusal } from '../broker/broker.js';
import { NEVER_EXPIRES } from '../broker/sessions.js';
import { Protocol } from '../broker/protocol.js';
import type { Session } from '../broker/session.js';
import { ReasonCode } from '../mqtt/reason-codes.js';
import { RebalanceError } from './errors.js';

export type EvictionKind = 'evacuation' | 'rebalance';

export interface AgentState {
  readonly kind: EvictionKind;
  /** MQTT 5 Server Reference for evicted and refused 5.0 clients; undefined: none. */
  readonly redirect: string | undefined;
  readonly allowConnections: boolean;
}

/** Moves a disconnected session to another node (the recipient pulls it with the takeover). */
export interface SessionMover {
  /** Resolves true once `node` holds the session, false when it was gone (nothing to move). */
  move(clientId: string, node: string): Promise<boolean>;
}

/** Session moves in flight at once: bounds memory and RPCs whatever the rate. */
const MAX_MOVES_IN_FLIGHT = 256;
/** A session whose move failed this often is left alone (it expires here) rather than retried forever. */
const MAX_MOVE_ATTEMPTS = 3;

export class EvictionAgent {
  private current: AgentState | null = null;
  /** Set on the broker while connections are refused; its counter survives enable/disable. */
  private readonly refusal: ConnectRefusal = { properties: undefined, refused: 0 };
  private connCursor: Iterator<unknown> | null = null;
  private sessCursor: Iterator<Session> | null = null;
  private readonly moving = new Set<string>();
  private readonly failures = new Map<string, number>();
  /** Connections evicted and sessions moved, by the kind enabled at the time (metrics, rebalance progress). */
  readonly evicted: Record<EvictionKind, { connections: number; sessions: number }> = {
    evacuation: { connections: 0, sessions: 0 },
    rebalance: { connections: 0, sessions: 0 },
  };
  sessionMovesFailed = 0;
  /** Told when new connections start or stop being refused (node.ts pauses the listeners). */
  onRefusingChange: ((refusing: boolean) => void) | null = null;

  constructor(
    private readonly broker: Broker,
    private readonly mover: SessionMover | null,
  ) {}

  get state(): AgentState | null {
    return this.current;
  }

  /** The availability check's switch: 503 while enabled, whatever the kind (SPEC 8). */
  get serving(): boolean {
    return this.current === null;
  }

  /** Whether new connections are refused now. */
  get refusing(): boolean {
    return this.current !== null && !this.current.allowConnections;
  }

  /** CONNECTs refused while enabled and not allowing connections. */
  get refusedConnects(): number {
    return this.refusal.refused;
  }

  /**
   * Enables the agent for `kind`, or changes its settings when already enabled for that kind.
   * Enabled for the other kind: `eviction_agent_busy`.
   */
  enable(kind: EvictionKind, redirect: string | undefined, allowConnections: boolean): void {
    if (this.current !== null && this.current.kind !== kind) throw new RebalanceError('eviction_agent_busy', 'eviction_agent_busy');
    const was = this.refusing;
    this.current = { kind, redirect, allowConnections };
    this.refusal.properties = redirect === undefined ? undefined : { serverReference: redirect };
    this.broker.connectRefusal = allowConnections ? null : this.refusal;
    if (was !== this.refusing) this.onRefusingChange?.(!was);
  }

  /** Back to normal: connections accepted, available again. A no-op unless enabled for `kind`. */
  disable(kind: EvictionKind): void {
    if (this.current?.kind !== kind) return;
    const was = this.refusing;
    this.current = null;
    this.broker.connectRefusal = null;
    this.connCursor = null;
    this.sessCursor = null;
    this.failures.clear();
    if (was) this.onRefusingChange?.(false);
  }

  /**
   * Disconnects up to n live connections: 5.0 DISCONNECT 0x9C (+ Server Reference), 3.x close;
   * the will is published (a server-side disconnect). Returns how many; fewer than n means none
   * is left.
   */
  evictConnections(n: number): number {
    const properties = this.refusal.properties;
    let done = 0;
    while (done < n) {
      const conn = this.nextConnection();
      if (conn === undefined) break;
      conn.disconnect(ReasonCode.UseAnotherServer, true, properties);
      done++;
    }
    if (this.current !== null) this.evicted[this.current.kind].connections += done;
    return done;
  }

  /**
   * Starts moving up to n disconnected sessions that still have expiry left, each to a random
   * node of `nodes`. Returns how many moves it started (fewer when none is left to start or
   * MAX_MOVES_IN_FLIGHT are under way).
   */
  evictSessions(n: number, nodes: readonly string[]): number {
    const mover = this.mover;
    if (mover === null || nodes.length === 0 || this.current === null) return 0;
    const counts = this.evicted[this.current.kind];
    const now = Date.now();
    let started = 0;
    while (started < n && this.moving.size < MAX_MOVES_IN_FLIGHT) {
      const session = this.nextSession(now);
      if (session === undefined) break;
      const clientId = session.clientId;
      const node = nodes[Math.floor(Math.random() * nodes.length)] as string;
      this.moving.add(clientId);
      started++;
      mover.move(clientId, node).then(
        (moved) => {
          this.moving.delete(clientId);
          if (moved) counts.sessions++;
        },
        (err: unknown) => {
          this.moving.delete(clientId);
          this.sessionMovesFailed++;
          this.failures.set(clientId, (this.failures.get(clientId) ?? 0) + 1);
          this.broker.log.warn({ err, clientId, node }, 'session eviction failed');
        },
      );
    }
    return started;
  }

  /** Live MQTT connections (past CONNACK). O(connections): for status and goals, not per packet. */
  connectionCount(): number {
    let n = 0;
    for (const conn of this.broker.connections) if (conn instanceof Protocol && conn.connected) n++;
    return n;
  }

  sessionCount(): number {
    return this.broker.sessions.size;
  }

  disconnectedSessionCount(): number {
    let n = 0;
    for (const s of this.broker.sessions.values()) if (s.owner === null) n++;
    return n;
  }

  /** Session moves under way. */
  get movesInFlight(): number {
    return this.moving.size;
  }

  /**
   * The next live connection. One cursor walks the connection set across calls (JS set
   * iterators survive deletions and see additions), so a pass costs O(connections) in total
   * instead of rescanning evicted slots on every call; a second pass catches what the first missed.
   */
  private nextConnection(): Protocol | undefined {
    for (let pass = 0; pass < 2; pass++) {
      const cursor = (this.connCursor ??= this.broker.connections.values());
      for (let r = cursor.next(); r.done !== true; r = cursor.next()) {
        const conn = r.value;
        if (conn instanceof Protocol && conn.connected) return conn;
      }
      this.connCursor = null;
    }
    return undefined;
  }

  /** The next session to move: disconnected, not moving, not failed too often, expiry left. */
  private nextSession(now: number): Session | undefined {
    for (let pass = 0; pass < 2; pass++) {
      const cursor = (this.sessCursor ??= this.broker.sessions.values());
      for (let r = cursor.next(); r.done !== true; r = cursor.next()) {
        const s = r.value;
        if (s.owner !== null || this.moving.has(s.clientId)) continue;
        if ((this.failures.get(s.clientId) ?? 0) >= MAX_MOVE_ATTEMPTS) continue;
        if (s.expiryInterval !== NEVER_EXPIRES && s.disconnectedAt + s.expiryInterval * 1000 <= now) continue;
        return s;
      }
      this.sessCursor = null;
    }
    return undefined;
  }
}
