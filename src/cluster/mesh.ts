// The link mesh of the cluster: the cluster port (a bounded number of handshakes in progress,
// TLS when configured, refusals counted and logged at a limited rate), dialing members and seeds,
// one kept link per pair of nodes when both dial, heartbeats. A link that comes up or goes down
// is reported to the cluster; what links receive goes to the cluster's dispatch.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { parseNodeAddress } from './address.js';
import { Link, type HandshakeLimits, type LinkHandler, type LinkMessage } from './link.js';
import { ClusterError, DIAL_MAX_MS, DIAL_MIN_MS, type Member, type Membership } from './membership.js';
import { Msg } from './messages.js';

/** A link sends at least this often (a Ping when idle)... */
const HEARTBEAT_MS = 1000;
/** ...and is declared dead after this long without a byte from the peer. */
export const FAILURE_MS = 5000;
/** At most one log line per this period about connections refused before they authenticated. */
const REFUSAL_LOG_MS = 10_000;

interface ClusterTls {
  /** Certificate, key and CA, read once at start (a bad file fails the start). */
  readonly context: tls.SecureContextOptions;
  /** Both sides present a certificate signed by the CA. */
  readonly verify: boolean;
}

function clusterTls(c: Config['cluster']): ClusterTls | null {
  if (c.tls_cert_file === '') return null;
  const context: tls.SecureContextOptions = {
    cert: readFileSync(c.tls_cert_file),
    key: readFileSync(c.tls_key_file),
    ...(c.tls_ca_file === '' ? {} : { ca: readFileSync(c.tls_ca_file) }),
    minVersion: 'TLSv1.2',
  };
  return { context, verify: c.tls_verify_peer };
}

/** What the mesh tells the cluster. */
export interface MeshHost {
  /** A peer's link is up: it gets our state. */
  peerUp(link: Link): void;
  /** A member's link went down: its routes and pending calls go. Returns how many routes it had. */
  peerDown(name: string): number;
  /** A message from an up link. */
  linkMessage(link: Link, m: LinkMessage): void;
}

export class Mesh implements LinkHandler {
  /** The members, with their links (Membership's map). */
  private readonly members: Map<string, Member>;
  /** Links accepted or dialed by address whose peer is not a member yet (handshake). */
  private readonly loose = new Set<Link>();
  private readonly incarnation = randomUUID();
  private readonly cookie: string;
  private readonly handshake: HandshakeLimits;
  private readonly tls: ClusterTls | null;
  /**
   * Connections to the cluster port not authenticated yet (TLS handshake included), by their TCP
   * pair `address:port`; bounded by cluster.max_pending_handshakes.
   */
  private readonly handshaking = new Map<string, Socket>();
  /** The TCP pair of each accepted link in its handshake (a TLS socket reports its TCP socket's). */
  private readonly acceptedPairs = new Map<Link, string>();
  /** Wraps accepted sockets in TLS when cluster TLS is on; it does not listen itself. */
  private tlsServer: tls.Server | null = null;
  private refusalLogAt = 0;
  private refusalsUnlogged = 0;
  private server: Server | null = null;

  constructor(
    private readonly node: string,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly membership: Membership,
    /** Handshakes this node failed, by reason (the cluster's stats). */
    private readonly refusals: Map<string, number>,
    private readonly host: MeshHost,
  ) {
    this.members = membership.members;
    this.cookie = config.node.cookie;
    this.handshake = { timeoutMs: config.cluster.handshake_timeout * 1000, maxFrame: config.cluster.max_handshake_frame };
    this.tls = clusterTls(config.cluster);
  }

  /** Listens on the cluster port; resolves with the port. */
  async listen(): Promise<number> {
    const server = createServer((socket) => this.gate(socket));
    if (this.tls !== null) {
      // The TLS handshake is part of the link's: the same deadline and slot, and a failure is a refusal.
      const options = { ...this.tls.context, requestCert: this.tls.verify, rejectUnauthorized: this.tls.verify, handshakeTimeout: this.handshake.timeoutMs };
      this.tlsServer = tls.createServer(options, (socket) => this.accept(socket));
      this.tlsServer.on('tlsClientError', (err, socket) => this.refusedAt(socket.remoteAddress, 'tls', err.message));
    }
    this.server = server;
    const host = parseNodeAddress(this.node).host;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.cluster.port, host, () => resolve());
    });
    // Accept errors (EMFILE) are logged; without a listener they would crash the node.
    server.on('error', (err) => this.log.error({ err }, 'cluster listener error'));
    return this.listenPort();
  }

  /** Closes every link and the cluster port. */
  async close(): Promise<void> {
    for (const link of this.allLinks()) link.close('node stopping');
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  dialingFor(intent: string): boolean {
    for (const l of this.loose) if (l.dialed && l.intent === intent) return true;
    return false;
  }

  listenPort(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : this.config.cluster.port;
  }

  /** Heartbeats: a Ping on a quiet link, and a link silent too long is closed as failed. */
  heartbeat(now: number): void {
    for (const m of this.members.values()) {
      const link = m.link;
      if (link === null) continue;
      if (now - link.lastReceived > FAILURE_MS) link.close(`no heartbeat for ${FAILURE_MS} ms`);
      else if (now - link.lastSent >= HEARTBEAT_MS) link.send([Msg.Ping]);
    }
  }

  // ---- accept and dial ---------------------------------------------------------------------------------

  /** A TCP connection to the cluster port: it gets a handshake slot, or is closed at once. */
  private gate(socket: Socket): void {
    const max = this.config.cluster.max_pending_handshakes;
    if (this.handshaking.size >= max) {
      this.refusedAt(socket.remoteAddress, 'too_many_pending', `over cluster.max_pending_handshakes (${max})`);
      socket.destroy();
      return;
    }
    const pair = `${socket.remoteAddress}:${socket.remotePort}`;
    this.handshaking.set(pair, socket);
    socket.once('close', () => {
      if (this.handshaking.get(pair) === socket) this.handshaking.delete(pair);
    });
    if (this.tlsServer === null) this.accept(socket);
    else this.tlsServer.emit('connection', socket);
  }

  private accept(socket: Socket): void {
    const link = new Link(socket, this.node, this.cookie, this.incarnation, this, this.log, undefined, false, 'member', this.handshake);
    this.loose.add(link);
    this.acceptedPairs.set(link, `${socket.remoteAddress}:${socket.remotePort}`);
  }

  /** An accepted link's handshake is over (up or failed): its slot is free. */
  private handshakeOver(link: Link): void {
    const pair = this.acceptedPairs.get(link);
    if (pair === undefined) return;
    this.acceptedPairs.delete(link);
    this.handshaking.delete(pair);
  }

  dial(host: string, port: number, expected: string | undefined, intent: string): Link {
    // Peers are identified by the cluster CA and the cookie, not by host names in certificates
    // (nodes are often named by IP address).
    const socket =
      this.tls === null ? connect({ host, port }) : tls.connect({ ...this.tls.context, rejectUnauthorized: this.tls.verify, host, port, checkServerIdentity: () => undefined });
    const link = new Link(socket, this.node, this.cookie, this.incarnation, this, this.log, expected, true, intent, this.handshake);
    const m = expected === undefined ? undefined : this.members.get(expected);
    if (m !== undefined) m.dialing = link;
    else this.loose.add(link);
    return link;
  }

  /** The kept link of a pair is the one dialed by the smaller name. */
  private preferred(link: Link): boolean {
    const dialer = link.dialed ? this.node : link.peer;
    return dialer === (this.node < link.peer ? this.node : link.peer);
  }

  /** Why a second link for a name with a live link is refused; undefined when it replaces it. */
  private duplicate(link: Link, current: Link): string | undefined {
    if (current.peerIncarnation !== link.peerIncarnation) return 'name_in_use';
    return this.preferred(link) && !this.preferred(current) ? undefined : 'duplicate_link';
  }

  admit(link: Link): string | undefined {
    if (link.peer === this.node) return 'name_in_use';
    if (this.membership.removed.has(link.peer) && link.intent !== 'join') return 'removed_from_cluster';
    const current = this.members.get(link.peer)?.link;
    return current != null && current !== link ? this.duplicate(link, current) : undefined;
  }

  refused(link: Link, reason: string): void {
    // The dialer's own refusals are logged by the link (an operator's wrong cookie); what a
    // stranger sends to our port only in the rate-limited line.
    if (link.dialed) this.countRefusal(reason);
    else this.refusedAt(link.socket.remoteAddress, reason, 'handshake failed');
  }

  private countRefusal(reason: string): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
  }

  /** A connection to the cluster port refused before it authenticated: counted, logged at most once per period. */
  private refusedAt(remote: string | undefined, reason: string, detail: string): void {
    this.countRefusal(reason);
    const now = Date.now();
    if (now - this.refusalLogAt < REFUSAL_LOG_MS) {
      this.refusalsUnlogged++;
      return;
    }
    this.log.warn({ remote, reason, detail, refused_since_last_line: this.refusalsUnlogged }, 'cluster port: connection refused before authentication');
    this.refusalLogAt = now;
    this.refusalsUnlogged = 0;
  }

  linkUp(link: Link): void {
    this.loose.delete(link);
    this.handshakeOver(link);
    const peer = link.peer;
    let m = this.members.get(peer);
    if (link.dialed) {
      const current = m?.link;
      const why = peer === this.node ? 'name_in_use' : current != null ? this.duplicate(link, current) : undefined;
      if (why !== undefined) {
        if (why === 'name_in_use') this.log.warn({ peer, remote: link.remote }, 'cluster link closed: node name already in use');
        link.close(why);
        return;
      }
    }
    if (link.intent === 'join') this.membership.removed.delete(peer);
    let added = false;
    if (m === undefined) {
      // A dialed peer listens where we reached it; one that dialed us says where in its Members.
      m = this.membership.addMember(peer, link.socket.remoteAddress ?? '', link.dialed ? (link.socket.remotePort ?? 0) : 0, 0, 0);
      added = true;
    }
    if (m.dialing === link) m.dialing = null;
    const old = m.link;
    m.link = link;
    m.downSince = 0;
    m.failures = 0;
    if (old !== null && old !== link) old.close('replaced by another link');
    this.log.info({ peer, remote: link.remote }, 'cluster node up');
    this.host.peerUp(link);
    if (added) {
      this.membership.broadcastMembers(link);
      this.membership.persist();
    }
  }

  linkDown(link: Link, why: string): void {
    this.loose.delete(link);
    this.handshakeOver(link);
    const joinWaiter = this.membership.joinWaiter;
    if (joinWaiter !== null && joinWaiter.link === link) this.membership.settleJoin(new ClusterError(`cannot join ${joinWaiter.name}: ${why}`));
    // Only a member's own links (its live link, our dial to it) speak for it: a connection that
    // merely claimed its name changes nothing.
    const m = this.members.get(link.peer !== '' ? link.peer : (link.expected ?? ''));
    if (m === undefined || (m.link !== link && m.dialing !== link)) return;
    if (link.refusal === 'removed_from_cluster') {
      // It removed us while we were away: we are not part of its cluster any more.
      this.membership.dropMember(m.name, why);
      this.membership.persist();
      return;
    }
    if (m.dialing === link) {
      m.dialing = null;
      m.failures++;
      m.nextDial = Date.now() + Math.min(DIAL_MAX_MS, DIAL_MIN_MS * 2 ** Math.min(m.failures, 5));
    }
    if (m.link !== link) return;
    m.link = null;
    m.downSince = Date.now();
    m.nextDial = Date.now() + DIAL_MIN_MS;
    const routes = this.host.peerDown(m.name);
    this.log.warn({ peer: m.name, why, routes_purged: routes }, 'cluster node down');
  }

  linkMessage(link: Link, m: LinkMessage): void {
    this.host.linkMessage(link, m);
  }

  linkTo(node: string): Link | undefined {
    return this.members.get(node)?.link ?? undefined;
  }

  upNodes(): string[] {
    const nodes: string[] = [];
    for (const m of this.members.values()) if (m.link !== null) nodes.push(m.name);
    return nodes;
  }

  allLinks(): Link[] {
    const links = [...this.loose];
    for (const m of this.members.values()) {
      if (m.link !== null) links.push(m.link);
      if (m.dialing !== null) links.push(m.dialing);
    }
    return links;
  }

  broadcast(message: LinkMessage): void {
    for (const m of this.members.values()) if (m.link !== null) m.link.send(message);
  }

  /** Writes what every link has queued now, not at the end of the turn. */
  flush(): void {
    for (const m of this.members.values()) if (m.link !== null) m.link.flush();
  }
}
