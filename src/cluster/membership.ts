// Cluster membership (SPEC 4, seed distributed-cluster): the member list with join, leave and
// force-leave, removal tombstones, merging member lists after a partition, discovery (static
// seeds, DNS), autoclean of members down too long, and the list persisted so a restarted node
// rejoins by itself. Links are the mesh's (cluster.ts): membership asks it to dial.
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { parseNodeAddress } from './address.js';
import type { Link, LinkMessage } from './link.js';
import { Msg } from './messages.js';

/** Redial backoff bounds. */
export const DIAL_MIN_MS = 250;
export const DIAL_MAX_MS = 5000;
/** DNS discovery looks the name up this often. */
const DNS_EVERY_MS = 5000;
/** A static seed that is not a member is dialed at most this often. */
const SEED_EVERY_MS = 1000;
/** Removal tombstones are kept this long at least, so stale gossip cannot bring a node back. */
const TOMBSTONE_MIN_MS = 3_600_000;
/** How long `join` waits for the link to the seed. */
const JOIN_WAIT_MS = 10_000;

export interface Member {
  readonly name: string;
  host: string;
  /** Its cluster port; 0 until it told us (a node that dialed us). */
  port: number;
  /** When it (last) joined: a removal older than this does not apply to it. */
  joinedAt: number;
  /** The link in use, once authenticated. */
  link: Link | null;
  /** An outbound link still in its handshake. */
  dialing: Link | null;
  /** ms since it is down (or since we learned of it), 0 while up. */
  downSince: number;
  nextDial: number;
  failures: number;
}

/** Thrown by join/leave/force-leave with the reason the CLI prints. */
export class ClusterError extends Error {
  override name = 'ClusterError';
}

export interface PersistedState {
  /** The node that saved it: a node's name is fixed once it has joined a cluster (SPEC 1). */
  node: string;
  joinedAt: number;
  members: Array<[name: string, host: string, port: number, joinedAt: number]>;
  removed: Array<[name: string, at: number]>;
}

/** What membership needs from the mesh and the rest of the cluster. */
export interface MembershipHost {
  /** Opens a link to a node (its handshake then reports up or down to the mesh). */
  dial(host: string, port: number, expected: string | undefined, intent: string): Link;
  /** Whether a link dialed with this intent is still in its handshake. */
  dialingFor(intent: string): boolean;
  /** The port the cluster listens on, as the member list reports it. */
  listenPort(): number;
  /** There is a member: the cluster becomes the broker's bridge. */
  attach(): void;
  /** No member left: the node is alone again. */
  detach(): void;
  /** A member was dropped: its routes, calls and registry entries go. */
  memberDropped(name: string): void;
}

export class Membership {
  readonly members = new Map<string, Member>();
  /** Removal tombstones: name -> when it was removed. */
  readonly removed = new Map<string, number>();
  private readonly statePath: string;
  /** When this node (last) joined: a removal older than this does not apply to it. */
  private joinedAt: number;
  private nextDns = 0;
  private nextSeeds = 0;
  private persistScheduled = false;
  /** The member list write in progress: writes of the file are serialized. */
  private saving: Promise<void> = Promise.resolve();
  /** A `cluster join` in progress: the seed's name and the link dialed to it. */
  joinWaiter: { name: string; link: Link | null; resolve(): void; reject(err: Error): void } | null = null;

  constructor(
    readonly node: string,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly host: MembershipHost,
  ) {
    this.statePath = join(config.node.data_dir, 'cluster.json');
    this.joinedAt = Date.now();
  }

  // ---- commands -----------------------------------------------------------------

  /**
   * `cluster join <node>`: leaves the current cluster if any, then links to the seed, which
   * introduces the others; resolves once the seed's link is up and the members it named are.
   */
  async join(target: string): Promise<void> {
    const address = parseNodeAddress(target);
    if (address.name === this.node) throw new ClusterError('cannot join the node itself');
    if (this.members.get(address.name)?.link != null) throw new ClusterError(`already in a cluster with ${address.name}`);
    if (this.joinWaiter !== null) throw new ClusterError('a join is already in progress');
    if (this.members.size > 0) this.leaveLocally('joining another cluster');
    this.joinedAt = Date.now();
    const waiter = { name: address.name, link: null as Link | null, resolve: (): void => {}, reject: (_err: Error): void => {} };
    const up = new Promise<void>((resolve, reject) => Object.assign(waiter, { resolve, reject }));
    this.joinWaiter = waiter;
    const timer = setTimeout(() => this.settleJoin(new ClusterError(`no answer from ${address.name} within ${JOIN_WAIT_MS / 1000} s`)), JOIN_WAIT_MS);
    try {
      waiter.link = this.host.dial(address.host, address.port, address.name, 'join');
      await up;
    } finally {
      clearTimeout(timer);
    }
    // The seed named the other members; give their links a moment so the status shows them.
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && [...this.members.values()].some((m) => m.link === null && m.port !== 0)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    this.persist();
  }

  /** `cluster leave`: tells every member, then forgets them; this node's own clients stay. */
  leave(): void {
    if (this.members.size === 0) throw new ClusterError('node is not in a cluster');
    // Closing a link flushes what was queued, so the Leave goes out first.
    for (const link of this.upLinks()) link.send([Msg.Leave]);
    this.leaveLocally('left the cluster');
  }

  /** `cluster force-leave <node>`: removes another node, telling it and every member. */
  forceLeave(name: string): void {
    if (name === this.node) throw new ClusterError('use leave to remove this node');
    const m = this.members.get(name);
    if (m === undefined) throw new ClusterError(`node ${name} is not in the cluster`);
    const at = Date.now();
    for (const link of this.upLinks()) link.send([Msg.Removed, name, at]);
    this.applyRemoval(name, at, 'removed by force-leave');
    this.persist();
  }

  /** Forgets every member (after leave, or being removed): alone, with only local state. */
  private leaveLocally(why: string): void {
    this.log.warn({ members: [...this.members.keys()], why }, 'leaving the cluster');
    for (const name of [...this.members.keys()]) this.dropMember(name, why);
    this.persist();
  }

  settleJoin(err: Error | undefined): void {
    const waiter = this.joinWaiter;
    if (waiter === null) return;
    this.joinWaiter = null;
    if (err === undefined) waiter.resolve();
    else waiter.reject(err);
  }

  upLinks(): Link[] {
    const links: Link[] = [];
    for (const m of this.members.values()) if (m.link !== null) links.push(m.link);
    return links;
  }

  addMember(name: string, host: string, port: number, joinedAt: number, downSince: number): Member {
    const m: Member = { name, host, port, joinedAt, link: null, dialing: null, downSince, nextDial: 0, failures: 0 };
    this.members.set(name, m);
    this.host.attach();
    return m;
  }

  // ---- the member list --------------------------------------------------------------------

  membersMessage(): LinkMessage {
    const list: PersistedState['members'] = [[this.node, '', 0, this.joinedAt]];
    for (const m of this.members.values()) list.push([m.name, m.host, m.port, m.joinedAt]);
    // Our own address as the peer sees it is its business; we report our listening port.
    const self = list[0] as PersistedState['members'][number];
    self[1] = parseNodeAddress(this.node).host;
    self[2] = this.host.listenPort();
    return [Msg.Members, list, [...this.removed]];
  }

  broadcastMembers(except: Link | null): void {
    const message = this.membersMessage();
    for (const link of this.upLinks()) if (link !== except) link.send(message);
  }

  /** Merges a member list (union), so both sides of a healed partition end with everyone. */
  onMembers(from: string, list: PersistedState['members'], removed: PersistedState['removed']): void {
    let changed = false;
    // A join is done once the seed has named the members (the first thing it sends).
    if (this.joinWaiter?.name === from) setImmediate(() => this.settleJoin(undefined));
    for (const [name, at] of removed) {
      if (name === this.node) {
        if (at >= this.joinedAt) {
          this.leaveLocally(`removed from the cluster (told by ${from})`);
          return;
        }
        continue;
      }
      if ((this.removed.get(name) ?? 0) < at && this.applyRemoval(name, at, 'removed from the cluster')) changed = true;
    }
    for (const [name, host, port, joinedAt] of list) {
      if (name === this.node) continue;
      const tomb = this.removed.get(name);
      if (tomb !== undefined) {
        if (tomb >= joinedAt) continue;
        this.removed.delete(name);
      }
      const m = this.members.get(name);
      if (m === undefined) {
        this.addMember(name, host, port, joinedAt, Date.now());
        changed = true;
      } else {
        if ((name === from || m.port === 0) && port !== 0 && m.port !== port) {
          m.host = host;
          m.port = port;
          changed = true;
        }
        if (joinedAt > m.joinedAt) m.joinedAt = joinedAt;
      }
    }
    if (changed) {
      this.broadcastMembers(null);
      this.persist();
    }
  }

  onRemoved(name: string, at: number): void {
    if (name === this.node) {
      if (at >= this.joinedAt) this.leaveLocally('removed from the cluster by force-leave');
      return;
    }
    this.applyRemoval(name, at, 'removed by force-leave');
    this.persist();
  }

  /** Records a removal and drops the member unless it joined again since. Returns whether it dropped one. */
  applyRemoval(name: string, at: number, why: string): boolean {
    this.removed.set(name, Math.max(at, this.removed.get(name) ?? 0));
    const m = this.members.get(name);
    if (m === undefined || m.joinedAt > at) return false;
    this.dropMember(name, why);
    return true;
  }

  /** Forgets a member: its link, routes and registry entries. */
  dropMember(name: string, why: string): void {
    const m = this.members.get(name);
    if (m === undefined) return;
    this.members.delete(name);
    m.link?.close(why);
    m.dialing?.close(why);
    this.host.memberDropped(name);
    this.log.info({ peer: name, why }, 'cluster member removed');
    if (this.members.size === 0) this.host.detach();
  }

  // ---- discovery, autoclean, persisted state ------------------------------------------------------------------------

  /** Members without a link: dropped after autoclean, else redialed; discovery; old tombstones go. */
  tick(now: number): void {
    for (const m of this.members.values()) {
      if (m.link !== null) continue;
      const autoclean = this.config.cluster.autoclean * 1000;
      if (autoclean > 0 && m.downSince > 0 && now - m.downSince > autoclean) {
        this.dropMember(m.name, `down longer than autoclean (${this.config.cluster.autoclean} s)`);
        this.persist();
        continue;
      }
      if (m.dialing === null && m.port !== 0 && now >= m.nextDial) {
        m.nextDial = now + DIAL_MAX_MS;
        this.host.dial(m.host, m.port, m.name, 'member');
      }
    }
    this.discover(now);
    for (const [name, at] of this.removed) {
      if (now - at > Math.max(TOMBSTONE_MIN_MS, this.config.cluster.autoclean * 1000)) this.removed.delete(name);
    }
  }

  /** Static seeds and DNS names are dialed while no member is known under their name/address. */
  private discover(now: number): void {
    const c = this.config.cluster;
    if (c.discovery === 'static' && now >= this.nextSeeds) {
      this.nextSeeds = now + SEED_EVERY_MS;
      for (const seed of c.seeds) {
        let address;
        try {
          address = parseNodeAddress(seed);
        } catch {
          continue;
        }
        if (address.name === this.node || this.members.has(address.name) || this.removed.has(address.name)) continue;
        if (this.host.dialingFor(`seed:${address.name}`)) continue;
        this.host.dial(address.host, address.port, address.name, `seed:${address.name}`);
      }
    } else if (c.discovery === 'dns' && now >= this.nextDns) {
      this.nextDns = now + DNS_EVERY_MS;
      // The system resolver: the name's A records (and /etc/hosts, as containers often use).
      lookup(c.dns_name, { all: true, family: 4 }).then(
        (found) => {
          const own = parseNodeAddress(this.node).host;
          for (const { address: ip } of found) {
            if (ip === own) continue;
            if ([...this.members.values()].some((m) => m.host === ip && (m.link !== null || m.dialing !== null))) continue;
            if (this.host.dialingFor(`dns:${ip}`)) continue;
            this.host.dial(ip, c.port, undefined, `dns:${ip}`);
          }
        },
        (err: unknown) => this.log.warn({ err: (err as Error).message, name: c.dns_name }, 'cluster dns discovery failed'),
      );
    }
  }

  load(): void {
    let state: PersistedState;
    try {
      state = JSON.parse(readFileSync(this.statePath, 'utf8')) as PersistedState;
    } catch {
      return; // never clustered
    }
    if (state.node !== this.node && state.members.length > 0) {
      throw new ClusterError(`${this.statePath} belongs to node ${state.node}, which has joined a cluster: its name cannot change (start it as ${state.node}, or use another data dir)`);
    }
    this.joinedAt = state.joinedAt;
    const now = Date.now();
    for (const [name, at] of state.removed) this.removed.set(name, at);
    for (const [name, host, port, joinedAt] of state.members) {
      if (name !== this.node) this.addMember(name, host, port, joinedAt, now);
    }
  }

  /** Writes the member list (once per turn), so a restarted node rejoins by itself. */
  persist(): void {
    if (this.persistScheduled) return;
    this.persistScheduled = true;
    setImmediate(() => {
      this.persistScheduled = false;
      const state: PersistedState = {
        node: this.node,
        joinedAt: this.joinedAt,
        members: [...this.members.values()].filter((m) => m.port !== 0).map((m) => [m.name, m.host, m.port, m.joinedAt]),
        removed: [...this.removed],
      };
      const tmp = `${this.statePath}.tmp`;
      this.saving = this.saving
        .then(() => writeFile(tmp, JSON.stringify(state)))
        .then(() => rename(tmp, this.statePath))
        .catch((err: unknown) => this.log.error({ err, path: this.statePath }, 'cannot save the cluster member list'));
    });
  }
}
