// Cross-node session takeover (SPEC 4, DESIGN.md "Takeover pull"). The node a client connects to
// pulls the session from the node holding it: `takeover.begin` makes the owner end the old
// connection (5.0 DISCONNECT 0x8E, no will), freeze the session and send it as a record stream;
// the recipient stores it (epoch-checked import) and installs it; `takeover.end` makes the owner
// hand over what it buffered meanwhile and drop its copy. Both steps are idempotent per takeover
// id; messages that reached both nodes during the handover are delivered once.
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import { messageKey } from '../broker/cluster-bridge.js';
import type { Delivery, Session, SubscriptionIds } from '../broker/session.js';
import { inflightRecord, queuedRecord, restoreSession, sessionRecord } from '../broker/session-journal.js';
import type { QoS } from '../mqtt/packets.js';
import { MemoryStore } from '../store/memory-store.js';
import { sessionHeader, type InflightRecord, type QueuedRecord, type SessionPart } from '../store/store.js';
import type { Link, LinkMessage } from './link.js';
import { decodeMessage, encodeMessage } from './message-wire.js';
import type { Rpc } from './rpc.js';

/** What the takeover needs from the cluster. */
export interface TakeoverHost {
  readonly node: string;
  readonly broker: Broker;
  readonly rpc: Rpc;
  readonly log: Logger;
  /** The up link to a node, if any. */
  linkTo(node: string): Link | undefined;
  /** Every node with an up link. */
  upNodes(): string[];
  /** The node the registry says holds a client id. */
  ownerOf(clientId: string): string | undefined;
  /** A handover of the client's session ended; `moved`, it is gone from here. */
  handOverEnded(clientId: string, moved: boolean): void;
}

/** A delivery as `takeover.end` sends it: [qos, retain, subscriptionId, ...the message (message-wire)]. */
type BufferedWire = LinkMessage;

type BeginReply = { parts: SessionPart[] } | { redirect: string } | null;

declare module './rpc.js' {
  interface RpcTable {
    ping: { args: null; result: boolean };
    'takeover.begin': { args: { clientId: string; id: string }; result: BeginReply };
    'takeover.end': { args: { clientId: string; id: string }; result: BufferedWire[] };
    'takeover.discard': { args: { clientId: string }; result: boolean };
    'takeover.fence': { args: { via: string }; result: boolean };
  }
}

/** Owner side: a session being handed over. */
interface Handing {
  id: string;
  session: Session;
  /** Queue entries sent with `begin`; what is queued beside them arrived during the handover. */
  sent: Set<Delivery>;
  reply: BeginReply;
  timer: NodeJS.Timeout;
  done: Promise<void>;
  finish(): void;
}

/** How many times a pull follows "the session moved on to node X". */
const MAX_REDIRECTS = 3;

/**
 * The session as a record stream, at `epoch`. Queue and inflight are renumbered in order, so a
 * session never journaled (no store order yet) imports as well as a stored one.
 */
function exportParts(session: Session, epoch: number): SessionPart[] {
  const parts: SessionPart[] = [{ kind: 'session', record: sessionRecord(session, epoch) }];
  let seq = 0;
  for (const [packetId, entry] of session.inflight) parts.push({ kind: 'inflight', packetId, entry: inflightRecord(entry, ++seq) });
  for (const packetId of session.incomingQos2) parts.push({ kind: 'incoming', packetId });
  for (const entry of session.queue) parts.push({ kind: 'queued', entry: queuedRecord(entry, ++seq) });
  return parts;
}

export class Takeover {
  private readonly handing = new Map<string, Handing>();
  private nextId = 0;
  /** Sessions moved here from another node, and moved from here to another (metrics). */
  migratedIn = 0;
  migratedOut = 0;

  constructor(private readonly host: TakeoverHost) {
    host.rpc.handle('takeover.begin', (args) => this.begin(args));
    host.rpc.handle('takeover.end', (args) => this.end(args));
    host.rpc.handle('takeover.discard', (args) => this.discard(args.clientId));
    host.rpc.handle('takeover.fence', (args) => this.fence(args.via));
    host.rpc.handle('ping', () => true);
  }

  /**
   * Runs after our routes for the moved session reached this node (links are FIFO): a ping to the
   * old owner returns once everything this node forwarded there before has arrived.
   */
  private async fence(via: string): Promise<boolean> {
    const link = this.host.linkTo(via);
    if (link !== undefined) await this.host.rpc.call(link, 'ping', null);
    return true;
  }

  /** Whether this node is handing the client's session over right now. */
  handingOver(clientId: string): boolean {
    return this.handing.has(clientId);
  }

  /**
   * Takes the client's session from `owner` and installs it here, disconnected; with a clean
   * start the owner only ends it. Rejects (RpcError) when the owner does not answer in time.
   */
  async pull(owner: string, clientId: string, cleanStart: boolean): Promise<void> {
    const { broker, rpc } = this.host;
    const id = `${this.host.node}#${++this.nextId}`;
    let from = owner;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const link = this.host.linkTo(from);
      if (link === undefined) return; // the holder is down: a fresh session, reconciled when it returns
      if (cleanStart) {
        await rpc.call(link, 'takeover.discard', { clientId });
        return;
      }
      const reply = await rpc.call(link, 'takeover.begin', { clientId, id });
      if (reply === null) return;
      if ('redirect' in reply) {
        if (reply.redirect === this.host.node) return;
        from = reply.redirect;
        continue;
      }
      const session = await this.install(reply.parts);
      // Other nodes may have forwarded messages to the old owner before they learned our routes;
      // those must reach it before it hands over its buffer, or they would be lost.
      await Promise.allSettled(
        this.host.upNodes().flatMap((n) => {
          const l = n === from ? undefined : this.host.linkTo(n);
          return l === undefined ? [] : [rpc.call(l, 'takeover.fence', { via: from })];
        }),
      );
      let buffered: BufferedWire[] = [];
      try {
        buffered = await rpc.call(link, 'takeover.end', { clientId, id });
      } catch (err) {
        // The session as it was at begin is here; what the owner buffered stays with it.
        this.host.log.warn({ err, clientId, owner: from }, 'takeover end failed; continuing with the session as handed over');
      }
      for (const w of buffered) {
        const message = decodeMessage(w, 3);
        const key = messageKey(message);
        if (key !== undefined && session.handover?.has(key) === true) continue; // already delivered here
        session.deliver(message, w[0] as QoS, w[1] as boolean, w[2] as SubscriptionIds, broker.limits, broker.stats);
      }
      session.handover = null;
      this.migratedIn++;
      return;
    }
  }

  /** Stores the record stream (epoch-checked) and puts the session in the broker, disconnected. */
  private async install(parts: SessionPart[]): Promise<Session> {
    const broker = this.host.broker;
    const record = sessionHeader(parts);
    if (broker.sessions.has(record.clientId)) throw new Error(`takeover of ${record.clientId}: a session opened here meanwhile`);
    const store = broker.store ?? new MemoryStore();
    const sid = await store.importSession(parts);
    if (sid === undefined) throw new Error(`stale takeover of ${record.clientId}: a newer copy is stored here`);
    const inflight: Array<[number, InflightRecord]> = [];
    const incoming: number[] = [];
    const queue: QueuedRecord[] = [];
    const seen = new Set<string>();
    for (const part of parts) {
      if (part.kind === 'inflight') inflight.push([part.packetId, part.entry]);
      else if (part.kind === 'incoming') incoming.push(part.packetId);
      else if (part.kind === 'queued') queue.push(part.entry);
      else continue;
      if (part.kind !== 'incoming') {
        const key = messageKey(part.entry.message);
        if (key !== undefined) seen.add(key);
      }
    }
    const session = restoreSession({ sid, record, inflight, incoming, queue }, store, Date.now());
    if (broker.store === null) session.journal = null;
    session.handover = seen;
    if (broker.sessions.has(record.clientId)) throw new Error(`takeover of ${record.clientId}: a session opened here meanwhile`);
    broker.sessions.adopt(session, record.subscriptions);
    return session;
  }

  private async begin(args: { clientId: string; id: string }): Promise<BeginReply> {
    const { broker, rpc } = this.host;
    const { clientId, id } = args;
    const current = this.handing.get(clientId);
    if (current !== undefined) {
      if (current.id === id) return current.reply; // a repeated begin
      await current.done; // another node's takeover first; then the session has moved on
    }
    const session = broker.sessions.handOver(clientId);
    if (session === undefined) {
      const owner = this.host.ownerOf(clientId);
      return owner !== undefined && owner !== this.host.node ? { redirect: owner } : null;
    }
    const epoch = (session.journal?.epoch ?? 0) + 1;
    const reply: BeginReply = { parts: exportParts(session, epoch) };
    let finish = (): void => {};
    const done = new Promise<void>((resolve) => (finish = resolve));
    // The recipient may vanish between begin and end: the session then stays here.
    const timer = setTimeout(() => this.abort(clientId, id), rpc.timeoutMs * 2);
    this.handing.set(clientId, { id, session, sent: new Set(session.queue), reply, timer, done, finish });
    return reply;
  }

  private end(args: { clientId: string; id: string }): BufferedWire[] {
    const h = this.handing.get(args.clientId);
    if (h === undefined || h.id !== args.id) return []; // a repeated end: already handed over
    const buffered: BufferedWire[] = [];
    for (const d of h.session.queue) {
      if (h.sent.has(d)) continue;
      buffered.push(encodeMessage(d.message, [d.qos, d.retain, d.subscriptionId]));
    }
    this.settle(args.clientId, h, true);
    return buffered;
  }

  private abort(clientId: string, id: string): void {
    const h = this.handing.get(clientId);
    if (h === undefined || h.id !== id) return;
    this.host.log.warn({ clientId }, 'takeover not completed by the recipient in time; the session stays here');
    this.settle(clientId, h, false);
  }

  private settle(clientId: string, h: Handing, moved: boolean): void {
    this.handing.delete(clientId);
    clearTimeout(h.timer);
    if (moved) this.migratedOut++;
    this.host.broker.sessions.endHandOver(h.session, moved, Date.now());
    // Before a begin waiting for this one goes on: it then sees where the session is.
    this.host.handOverEnded(clientId, moved);
    h.finish();
  }

  /** A clean start elsewhere: the old connection and session end here. */
  private discard(clientId: string): boolean {
    const broker = this.host.broker;
    const session = broker.sessions.handOver(clientId);
    if (session !== undefined) broker.sessions.endHandOver(session, true, Date.now());
    return true;
  }

  close(): void {
    for (const [clientId, h] of this.handing) this.settle(clientId, h, false);
  }
}
