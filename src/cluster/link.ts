// One authenticated node-to-node link: length-prefixed msgpack frames over TCP, a handshake in
// which both sides prove they know the cluster cookie (HMAC over fresh nonces; the cookie never
// crosses the wire), then batches of messages coalesced per event-loop turn (DESIGN.md
// principle 6) and heartbeats.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { Packr, RESERVE_START_SPACE } from 'msgpackr';

/** A message on an established link: its first element is the message type. */
export type LinkMessage = unknown[];

/** Largest frame accepted; a peer sending more is cut off (bounded buffers, principle 4). */
export const MAX_FRAME = 256 * 1024 * 1024;
/** Bytes queued to a peer after which QoS 0 forwards to it are dropped. */
export const MAX_LINK_BACKLOG = 64 * 1024 * 1024;
/** Time a handshake may take, from connect to welcome. */
const HANDSHAKE_MS = 5000;
const NONCE_BYTES = 16;
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

  /** Appends bytes and returns the message arrays of every complete frame; throws on a bad one. */
  push(chunk: Buffer): LinkMessage[][] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: LinkMessage[][] = [];
    for (;;) {
      if (this.buffered < 4) break;
      let head = this.chunks[0] as Buffer;
      if (head.length < 4) head = this.flatten();
      const length = head.readUInt32BE(0);
      if (length > MAX_FRAME) throw new Error(`cluster frame of ${length} bytes exceeds ${MAX_FRAME}`);
      if (this.buffered < 4 + length) break;
      if (head.length < 4 + length) head = this.flatten();
      const body = head.subarray(4, 4 + length);
      const rest = head.subarray(4 + length);
      if (rest.length > 0) this.chunks[0] = rest;
      else this.chunks.shift();
      this.buffered -= 4 + length;
      const decoded: unknown = packr.unpack(body);
      if (!Array.isArray(decoded)) throw new Error('cluster frame is not a message array');
      out.push(decoded as LinkMessage[]);
    }
    return out;
  }

  private flatten(): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [all];
    return all;
  }
}

export interface LinkHandler {
  /**
   * On the accepting side, after the peer proved the cookie: why it may not join (e.g. its name is
   * in use), or undefined to admit it.
   */
  admit(link: Link): string | undefined;
  /** Both sides authenticated: the link carries messages from now on. */
  linkUp(link: Link): void;
  linkMessage(link: Link, message: LinkMessage): void;
  /** The link is gone (also after a failed handshake, with up never called). */
  linkDown(link: Link, why: string): void;
}

const enum Phase {
  Hello,
  Challenge,
  Proof,
  Up,
  Closed,
}

function proof(cookie: string, role: string, nonceA: Buffer, nonceB: Buffer, nameA: string, nameB: string): Buffer {
  return createHmac('sha256', cookie).update(`${role}\0${nameA}\0${nameB}\0`).update(nonceA).update(nonceB).digest();
}

function sameBytes(a: unknown, b: Buffer): boolean {
  return Buffer.isBuffer(a) && a.length === b.length && timingSafeEqual(a, b);
}

export class Link {
  /** The peer's node name, known once it introduced itself. */
  peer = '';
  /** Whether this side dialed (the dialer of a pair's kept link is the smaller name). */
  readonly dialed: boolean;
  /** The peer process's random id: a second process claiming a name in use has another one. */
  peerIncarnation = '';
  /** Why the dialer connects ('join' after `cluster join`, else 'member'); set on both sides. */
  intent: string;
  private phase: Phase;
  private readonly decoder = new FrameDecoder();
  private readonly nonce = randomBytes(NONCE_BYTES);
  private peerNonce: Buffer = Buffer.alloc(0);
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
    private readonly expected: string | undefined,
    dialed: boolean,
    intent = 'member',
  ) {
    this.dialed = dialed;
    this.intent = intent;
    this.phase = dialed ? Phase.Challenge : Phase.Hello;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.close(err.message));
    socket.on('close', () => this.close('connection closed'));
    this.handshakeTimer = setTimeout(() => this.close('handshake timed out'), HANDSHAKE_MS);
    if (dialed) this.write([['hello', self, this.nonce, incarnation, intent]]);
  }

  get up(): boolean {
    return this.phase === Phase.Up;
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

  /** @internal Writes the batch of this turn (setImmediate callback). */
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
    this.socket.end();
    // A peer that does not close its side is cut off.
    setTimeout(destroySocket, CLOSE_GRACE_MS, this.socket).unref();
    this.handler.linkDown(this, why);
  }

  /** Rejects the peer with a reason it will log, then closes. */
  private reject(reason: string): void {
    this.socket.end(encodeFrame([['reject', reason]]));
    this.close(reason);
  }

  private onData(chunk: Buffer): void {
    this.lastReceived = Date.now();
    let frames: LinkMessage[][];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.log.warn({ peer: this.peer, remote: this.remote, err: (err as Error).message }, 'cluster link: bad frame');
      this.close('bad frame');
      return;
    }
    for (const frame of frames) {
      for (const message of frame) {
        if (this.phase === Phase.Closed) return;
        if (!Array.isArray(message)) {
          this.close('bad message');
          return;
        }
        if (this.phase === Phase.Up) this.handler.linkMessage(this, message);
        else this.handshake(message);
      }
    }
  }

  private handshake(m: LinkMessage): void {
    const [kind, a, b, c, d] = m;
    if (kind === 'reject') {
      if (a === 'bad_cookie') this.log.error({ peer: this.peer || this.expected, remote: this.remote }, 'cluster link refused: wrong cluster cookie');
      else this.log.warn({ peer: this.peer || this.expected, remote: this.remote, reason: a }, 'cluster link refused by the peer');
      this.close(`refused: ${String(a)}`);
      return;
    }
    switch (this.phase) {
      case Phase.Hello: {
        // Accepting side: the dialer introduces itself; we prove the cookie first.
        if (kind !== 'hello' || typeof a !== 'string' || !Buffer.isBuffer(b) || b.length !== NONCE_BYTES) return this.close('bad hello');
        this.peer = a;
        this.peerNonce = Buffer.from(b);
        this.peerIncarnation = String(c);
        this.intent = String(d);
        this.write([['challenge', this.self, this.nonce, proof(this.cookie, 'accept', this.peerNonce, this.nonce, this.self, a), this.incarnation]]);
        this.phase = Phase.Proof;
        return;
      }
      case Phase.Challenge: {
        // Dialing side: check the acceptor's proof, then give ours.
        if (kind !== 'challenge' || typeof a !== 'string' || !Buffer.isBuffer(b) || b.length !== NONCE_BYTES) return this.close('bad challenge');
        this.peer = a;
        this.peerNonce = Buffer.from(b);
        this.peerIncarnation = String(d);
        if (!sameBytes(c, proof(this.cookie, 'accept', this.nonce, this.peerNonce, a, this.self))) {
          this.log.error({ peer: a, remote: this.remote }, 'cluster link refused: the peer does not know the cluster cookie');
          return this.reject('bad_cookie');
        }
        if (this.expected !== undefined && a !== this.expected) {
          this.log.warn({ expected: this.expected, peer: a, remote: this.remote }, 'cluster link: unexpected node at this address');
          return this.close('unexpected node');
        }
        this.write([['proof', proof(this.cookie, 'dial', this.peerNonce, this.nonce, this.self, a)]]);
        this.phase = Phase.Proof;
        return;
      }
      case Phase.Proof: {
        if (!this.dialed) {
          if (kind !== 'proof' || !sameBytes(a, proof(this.cookie, 'dial', this.nonce, this.peerNonce, this.peer, this.self))) {
            this.log.error({ peer: this.peer, remote: this.remote }, 'cluster link refused: wrong cluster cookie');
            return this.reject('bad_cookie');
          }
          const refusal = this.handler.admit(this);
          if (refusal !== undefined) {
            this.log.warn({ peer: this.peer, remote: this.remote, reason: refusal }, 'cluster link refused');
            return this.reject(refusal);
          }
          this.write([['welcome']]);
        } else if (kind !== 'welcome') return this.close('bad welcome');
        this.phase = Phase.Up;
        if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
        this.handshakeTimer = null;
        this.handler.linkUp(this);
        return;
      }
      default:
        this.close('unexpected handshake message');
    }
  }
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

function flushLink(link: Link): void {
  link.flush();
}
