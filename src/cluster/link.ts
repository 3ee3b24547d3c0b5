// One authenticated node-to-node link: length-prefixed msgpack frames over TCP (or TLS), a
// handshake in which both sides prove they know the cluster cookie (HMAC over fresh nonces; the
// cookie never crosses the wire), then batches of messages coalesced per event-loop turn
// (DESIGN.md principle 6) and heartbeats. The dialer proves first and the acceptor proves only
// to a dialer that has proved (no HMAC of ours for a stranger to guess the cookie offline from);
// until the peer has proved, frames are small, the handshake has a deadline, and what the peer
// sends changes nothing but this link.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { Packr, RESERVE_START_SPACE } from 'msgpackr';

/** A message on an established link: its first element is the message type. */
export type LinkMessage = unknown[];

/** Largest frame accepted from an authenticated peer (bounded buffers, principle 4). */
export const MAX_FRAME = 256 * 1024 * 1024;
const NONCE_BYTES = 16;
/**
 * Version of the handshake, in the hello and the challenge. Version 1 (no number) had the acceptor
 * prove first; nodes that speak it are refused with a reason both sides log. The same release
 * changed the message encoding on the link (one codec, message-wire.ts), so no new version for it:
 * nodes of the previous release cannot link anyway.
 */
const HANDSHAKE_VERSION = 2;
/** Longest node name a handshake may carry (a name is `name@host[:port]`). */
const MAX_NAME = 255;
/** How long a closed link's socket may take to flush before it is destroyed. */
const CLOSE_GRACE_MS = 2000;

const packr = new Packr({ useRecords: false, moreTypes: false });
/** Packs with 4 bytes reserved in front for the length prefix: one buffer per frame. */
const PACK_OPTIONS = RESERVE_START_SPACE | 4;

/** One frame with its length prefix; the frame body is an array of messages. */
export function encodeFrame(messages: readonly LinkMessage[]): Buffer {
  const frame = packr.pack(messages, PACK_OPTIONS);
  frame.writeUInt32BE(frame.length - 4, 0);
  return frame;
}

/**
 * Cuts a byte stream into frame bodies. Bodies are decoded with msgpackr, whose binary values
 * are views of the frame (a forwarded payload is not copied again).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** @param limit largest frame body accepted; may change between frames (after a handshake). */
  constructor(public limit = MAX_FRAME) {}

  /** Appends bytes; frames are then taken one by one with next(). */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * The message array of the next complete frame, undefined until one is complete; throws on a
   * frame announced over the limit (before buffering it) or one that is not a message array.
   */
  next(): LinkMessage[] | undefined {
    if (this.buffered < 4) return undefined;
    let head = this.chunks[0] as Buffer;
    if (head.length < 4) head = this.flatten();
    const length = head.readUInt32BE(0);
    if (length > this.limit) throw new FrameTooLarge(`cluster frame of ${length} bytes exceeds ${this.limit}`);
    if (this.buffered < 4 + length) return undefined;
    if (head.length < 4 + length) head = this.flatten();
    const body = head.subarray(4, 4 + length);
    const rest = head.subarray(4 + length);
    if (rest.length > 0) this.chunks[0] = rest;
    else this.chunks.shift();
    this.buffered -= 4 + length;
    const decoded: unknown = packr.unpack(body);
    if (!Array.isArray(decoded)) throw new Error('cluster frame is not a message array');
    return decoded as LinkMessage[];
  }

  private flatten(): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }
}

export class FrameTooLarge extends Error {
  override name = 'FrameTooLarge';
}

/** Bounds on a link until its peer has proved the cookie. */
export interface HandshakeLimits {
  /** ms from connect to authenticated. */
  readonly timeoutMs: number;
  /** Largest frame body accepted before then. */
  readonly maxFrame: number;
}

export const DEFAULT_HANDSHAKE: HandshakeLimits = { timeoutMs: 5000, maxFrame: 4096 };

export interface LinkHandler {
  /**
   * On the accepting side, after the peer proved the cookie: why it may not join (e.g. its name is
   * in use), or undefined to admit it.
   */
  admit(link: Link): string | undefined;
  /** Both sides authenticated: the link carries messages from now on. */
  linkUp(link: Link): void;
  linkMessage(link: Link, message: LinkMessage): void;
  /**
   * The handshake failed on this side's check (`reason` a short label for metrics); called before
   * linkDown. What an unauthenticated peer sent is not logged by the link: the handler rate-limits.
   */
  refused(link: Link, reason: string): void;
  /** The link is gone (also after a failed handshake, with up never called). */
  linkDown(link: Link, why: string): void;
}

const enum Phase {
  /** Acceptor: waits for the dialer's hello. */
  Hello,
  /** Dialer: waits for the acceptor's challenge (its nonce). */
  Challenge,
  /** Acceptor: waits for the dialer's proof. */
  Proof,
  /** Dialer: waits for the acceptor's proof (welcome) or an authenticated reject. */
  Welcome,
  Up,
  Closed,
}

function proof(cookie: string, role: string, nonceA: Buffer, nonceB: Buffer, nameA: string, nameB: string): Buffer {
  return createHmac('sha256', cookie).update(`${role}\0${nameA}\0${nameB}\0`).update(nonceA).update(nonceB).digest();
}

function sameBytes(a: unknown, b: Buffer): boolean {
  return Buffer.isBuffer(a) && a.length === b.length && timingSafeEqual(a, b);
}

function isNonce(v: unknown): v is Buffer {
  return Buffer.isBuffer(v) && v.length === NONCE_BYTES;
}

function isName(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_NAME;
}

export class Link {
  /** The peer's node name, set once the peer has proved the cookie ('' until then). */
  peer = '';
  /** Why an authenticated peer refused this link (e.g. 'removed_from_cluster'); unset otherwise. */
  refusal: string | undefined;
  /** Whether this side dialed (the dialer of a pair's kept link is the smaller name). */
  readonly dialed: boolean;
  /** The peer process's random id: a second process claiming a name in use has another one. */
  peerIncarnation = '';
  /** Why the dialer connects ('join' after `cluster join`, else 'member'); set on both sides. */
  intent: string;
  private phase: Phase;
  private readonly decoder: FrameDecoder;
  private readonly nonce = randomBytes(NONCE_BYTES);
  private peerNonce: Buffer = Buffer.alloc(0);
  /** The name the peer gave in the handshake, its `peer` once it has proved the cookie. */
  private claimed = '';
  private out: LinkMessage[] = [];
  private scheduled = false;
  private handshakeTimer: NodeJS.Timeout | null;
  lastReceived = Date.now();
  lastSent = Date.now();

  constructor(
    readonly socket: Socket,
    private readonly self: string,
    private readonly cookie: string,
    private readonly incarnation: string,
    private readonly handler: LinkHandler,
    private readonly log: Logger,
    /** The name this side dialed; undefined when accepting or joining by address only. */
    readonly expected: string | undefined,
    dialed: boolean,
    intent = 'member',
    limits: HandshakeLimits = DEFAULT_HANDSHAKE,
  ) {
    this.dialed = dialed;
    this.intent = intent;
    this.phase = dialed ? Phase.Challenge : Phase.Hello;
    this.decoder = new FrameDecoder(limits.maxFrame);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close(err.message));
    socket.on('close', () => this.close('connection closed'));
    this.handshakeTimer = setTimeout(() => this.refuse('timeout', 'handshake timed out'), limits.timeoutMs);
    if (dialed) this.write([['hello', self, this.nonce, incarnation, intent, HANDSHAKE_VERSION]]);
  }

  get up(): boolean {
    return this.phase === Phase.Up;
  }

  private get closed(): boolean {
    return this.phase === Phase.Closed;
  }

  get remote(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  /** Bytes written and not yet taken by the kernel. */
  get backlog(): number {
    return this.socket.writableLength;
  }

  /** Queues a message; everything queued in one event-loop turn leaves as one frame. */
  send(message: LinkMessage): void {
    if (this.phase !== Phase.Up) return;
    this.out.push(message);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(flushLink, this);
    }
  }

  /** Writes what is queued now: the setImmediate callback, or a sender that cannot wait (Mesh.flush). */
  flush(): void {
    this.scheduled = false;
    if (this.out.length === 0 || this.phase !== Phase.Up) return;
    const batch = this.out;
    this.out = [];
    this.write(batch);
  }

  private write(messages: LinkMessage[]): void {
    this.lastSent = Date.now();
    this.socket.write(encodeFrame(messages));
  }

  /** Ends the link; what was queued this turn (a Leave, a last batch) still goes out first. */
  close(why: string): void {
    if (this.phase === Phase.Closed) return;
    const wasUp = this.phase === Phase.Up;
    this.phase = Phase.Closed;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    if (wasUp && this.out.length > 0 && this.socket.writable) this.write(this.out);
    this.out = [];
    // Nothing more is read from a peer that never authenticated (it may be streaming garbage).
    if (!wasUp) this.socket.pause();
    this.socket.end();
    // A peer that does not close its side is cut off.
    setTimeout(destroySocket, CLOSE_GRACE_MS, this.socket).unref();
    this.handler.linkDown(this, why);
  }

  /** A failed handshake check on this side: counted by the handler, then the link ends. */
  private refuse(reason: string, why: string = reason): void {
    if (this.phase === Phase.Closed || this.phase === Phase.Up) return;
    this.handler.refused(this, reason);
    this.close(why);
  }

  /** Acceptor: tells the dialer why, then closes; `signed` proves the refusal to a dialer that proved. */
  private reject(reason: string, signed: Buffer | null): void {
    this.socket.end(encodeFrame([signed === null ? ['reject', reason] : ['reject', reason, signed]]));
    this.close(reason);
  }

  private onData(chunk: Buffer): void {
    if (this.phase === Phase.Closed) return;
    this.lastReceived = Date.now();
    this.decoder.push(chunk);
    while (!this.closed) {
      let frame: LinkMessage[] | undefined;
      try {
        frame = this.decoder.next();
      } catch (err) {
        if (this.phase !== Phase.Up) return this.refuse(err instanceof FrameTooLarge ? 'frame_too_large' : 'bad_frame', 'bad frame');
        this.log.warn({ peer: this.peer, remote: this.remote, err: (err as Error).message }, 'cluster link: bad frame');
        return this.close('bad frame');
      }
      if (frame === undefined) return;
      for (const message of frame) {
        if (this.closed) return;
        if (!Array.isArray(message)) {
          if (this.phase !== Phase.Up) return this.refuse('bad_message');
          return this.close('bad message');
        }
        if (this.phase === Phase.Up) this.handler.linkMessage(this, message);
        else this.handshake(message);
      }
    }
  }

  /** Both sides have proved the cookie: the peer's name stands, frames may be large. */
  private authenticated(): void {
    this.peer = this.claimed;
    this.decoder.limit = MAX_FRAME;
    this.phase = Phase.Up;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.handler.linkUp(this);
  }

  private handshake(m: LinkMessage): void {
    const [kind, a, b, c, d, version] = m;
    switch (this.phase) {
      case Phase.Hello: {
        // Acceptor: the dialer introduces itself; we answer with our nonce and no proof yet.
        if (kind !== 'hello' || !isName(a) || !isNonce(b)) return this.refuse('bad_hello');
        if (version !== HANDSHAKE_VERSION) {
          // An older node: told plainly (it logs the reason), nothing of the cookie involved.
          this.handler.refused(this, 'handshake_version');
          return this.reject('unsupported_handshake_version', null);
        }
        this.claimed = a;
        this.peerNonce = Buffer.from(b);
        this.peerIncarnation = String(c);
        this.intent = String(d);
        this.write([['challenge', this.self, this.nonce, this.incarnation, HANDSHAKE_VERSION]]);
        this.phase = Phase.Proof;
        return;
      }
      case Phase.Challenge: {
        // Dialer: we prove first, over both nonces and both names.
        if (kind === 'reject') return this.refusedUnproved(a);
        if (kind !== 'challenge' || !isName(a) || !isNonce(b)) return this.refuse('bad_challenge');
        if (d !== HANDSHAKE_VERSION) {
          this.log.error({ peer: a, remote: this.remote }, 'cluster link refused: the peer speaks an older handshake (upgrade it to link with this node)');
          return this.refuse('handshake_version', 'unsupported handshake version');
        }
        if (this.expected !== undefined && a !== this.expected) {
          this.log.warn({ expected: this.expected, peer: a, remote: this.remote }, 'cluster link: unexpected node at this address');
          return this.refuse('unexpected_node', 'unexpected node');
        }
        this.claimed = a;
        this.peerNonce = Buffer.from(b);
        this.peerIncarnation = String(c);
        this.write([['proof', proof(this.cookie, 'dial', this.peerNonce, this.nonce, this.self, a)]]);
        this.phase = Phase.Welcome;
        return;
      }
      case Phase.Proof: {
        // Acceptor: only a dialer that proved the cookie gets our proof, in the welcome or a reject.
        if (kind !== 'proof' || !sameBytes(a, proof(this.cookie, 'dial', this.nonce, this.peerNonce, this.claimed, this.self))) {
          this.handler.refused(this, 'bad_cookie');
          return this.reject('bad_cookie', null);
        }
        const signed = proof(this.cookie, 'accept', this.peerNonce, this.nonce, this.self, this.claimed);
        this.peer = this.claimed;
        const refusal = this.handler.admit(this);
        if (refusal !== undefined) {
          this.log.warn({ peer: this.peer, remote: this.remote, reason: refusal }, 'cluster link refused');
          return this.reject(refusal, signed);
        }
        this.write([['welcome', signed]]);
        this.authenticated();
        return;
      }
      case Phase.Welcome: {
        // Dialer: the acceptor's proof, in a welcome or in a reject it stands behind.
        const expected = proof(this.cookie, 'accept', this.nonce, this.peerNonce, this.claimed, this.self);
        if (kind === 'reject' && sameBytes(b, expected)) {
          this.refusal = String(a);
          this.log.warn({ peer: this.claimed, remote: this.remote, reason: this.refusal }, 'cluster link refused by the peer');
          return this.close(`refused: ${this.refusal}`);
        }
        if (kind === 'reject') return this.refusedUnproved(a);
        if (kind !== 'welcome' || !sameBytes(a, expected)) {
          this.log.error({ peer: this.claimed, remote: this.remote }, 'cluster link refused: the peer does not know the cluster cookie');
          return this.refuse('bad_cookie', 'peer does not know the cookie');
        }
        this.authenticated();
        return;
      }
      default:
        this.refuse('unexpected', 'unexpected handshake message');
    }
  }

  /**
   * Dialer: a reject the peer did not prove. Only `bad_cookie` is expected unproved (the peer
   * could not check ours); any other reason is only a failed dial, acted on by nobody.
   */
  private refusedUnproved(reason: unknown): void {
    if (reason === 'bad_cookie') {
      this.log.error({ peer: this.expected, remote: this.remote }, 'cluster link refused: wrong cluster cookie');
      return this.refuse('refused_bad_cookie', 'bad_cookie');
    }
    this.refuse('unproved_reject', 'refused without proof');
  }
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

function flushLink(link: Link): void {
  link.flush();
}
