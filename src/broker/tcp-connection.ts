// The TCP I/O owner of one client: socket bytes to the protocol, the protocol's writes to the
// socket. Socket events go to shared module-level handlers (no closures per connection), and
// writes are corked for the rest of the event-loop turn so a burst of deliveries to one client
// leaves in one writev.
import type { Socket } from 'node:net';
import type { Broker } from './broker.js';
import { Protocol, type Transport } from './protocol.js';
import { LimitHit } from './stats.js';
import type { ListenerGate } from './tcp-listener.js';

interface ClientSocket extends Socket {
  tidemq: TcpConnection;
  /** Set on a plain TCP socket by its listener (tcp-listener.ts); a TLSSocket has none, its raw
   *  socket releases the gate. */
  tidemqGate?: ListenerGate;
}

/** TcpConnection.flags: three booleans in one small integer (memory per connection). */
const enum Flag {
  /** Corked for the rest of this turn (in `corked`). */
  Corked = 1,
  /** The protocol asked to stop reading (its CONNECT awaits a verdict or a session). */
  ReadPaused = 2,
  /** A 'drain' listener is set (awaitDrain). */
  DrainAwaited = 4,
}

const corked: TcpConnection[] = [];
let flushScheduled = false;

function flushCorked(): void {
  flushScheduled = false;
  for (const c of corked) {
    c.flags &= ~Flag.Corked;
    c.socket.uncork();
  }
  corked.length = 0;
}

function onData(this: ClientSocket, chunk: Buffer): void {
  this.tidemq.protocol.receive(chunk);
}

function onClose(this: ClientSocket): void {
  const conn = this.tidemq;
  // The listener's gate, here rather than in a second 'close' listener on every socket.
  if (this.tidemqGate !== undefined) this.tidemqGate.release();
  conn.broker.stats.connectionsLive--;
  conn.protocol.transportClosed();
}

function onDrain(this: ClientSocket): void {
  this.tidemq.flags &= ~Flag.DrainAwaited;
  this.tidemq.protocol.drained();
}

function onError(this: ClientSocket): void {
  // ECONNRESET and friends: 'close' follows and does the bookkeeping.
}

/** The linger of a closed connection ran out: the peer neither closed nor stopped sending. */
function cutOff(conn: TcpConnection): void {
  if (conn.socket.destroyed) return;
  conn.socket.destroy();
  conn.broker.stats.hitLimit(LimitHit.CloseLinger, conn.protocol.clientId, 0);
}

export class TcpConnection implements Transport {
  readonly protocol: Protocol;
  /** @internal Flag bits. */
  flags = 0;

  /**
   * `address`: the client's address from a PROXY header, else the socket's own. `username`: an
   * identity the transport established (a TLS client certificate's CN), overriding CONNECT's.
   */
  constructor(
    readonly socket: Socket,
    readonly broker: Broker,
    private readonly address?: string,
    readonly username?: string,
  ) {
    (socket as ClientSocket).tidemq = this;
    broker.stats.connectionsLive++;
    broker.stats.connectionsTotal++;
    this.protocol = new Protocol(broker, this, Date.now());
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
  }

  get remoteAddress(): string {
    return this.address ?? this.socket.remoteAddress ?? '';
  }

  get remotePort(): number | undefined {
    // Behind a PROXY header the socket's port is the proxy's, not the client's.
    return this.address === undefined ? this.socket.remotePort : undefined;
  }

  /** The protocol asked to stop reading (its CONNECT awaits a verdict or a session). */
  get readPaused(): boolean {
    return (this.flags & Flag.ReadPaused) !== 0;
  }

  get backlog(): number {
    return this.socket.writableLength;
  }

  /** Only a congested connection listens for 'drain': one listener fewer on every socket. */
  awaitDrain(): void {
    if ((this.flags & Flag.DrainAwaited) !== 0) return;
    this.flags |= Flag.DrainAwaited;
    this.socket.once('drain', onDrain);
  }

  write(buf: Buffer): void {
    this.cork();
    this.socket.write(buf);
  }

  /** A lone CONNACK needs no cork and no nextTick to leave: straight to the socket. */
  writeNow(buf: Buffer): void {
    this.socket.write(buf);
  }

  writePublish(header: Buffer, payload: Buffer): void {
    this.cork();
    this.socket.write(header);
    if (payload.length > 0) this.socket.write(payload);
  }

  /**
   * Flushes, half-closes, and reads on until the peer closes or mqtt.close_linger passes: a
   * client still sending (acks in flight) then reads our last packet (DISCONNECT, a refusing
   * CONNACK) instead of a reset, which unread input at close would cause. What arrives meanwhile
   * is discarded (the protocol is closed). A peer that never reads cannot hold the socket longer.
   */
  end(): void {
    const socket = this.socket;
    if (socket.destroyed) return; // the peer went first: nothing to flush or wait for
    socket.end();
    const linger = this.broker.config.mqtt.close_linger;
    if (linger === 0) {
      socket.destroySoon();
      return;
    }
    if (socket.isPaused()) this.resume();
    setTimeout(cutOff, linger * 1000, this).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** A cork of its own, under the turn's: Node writes out once every cork is undone. */
  hold(): void {
    this.socket.cork();
  }

  release(): void {
    // end() has undone every cork already, destroy() dropped the output: nothing is left to send.
    if (this.socket.writableCorked > 0) this.socket.uncork();
  }

  pause(): void {
    this.flags |= Flag.ReadPaused;
    this.socket.pause();
  }

  resume(): void {
    this.flags &= ~Flag.ReadPaused;
    this.socket.resume();
  }

  private cork(): void {
    if ((this.flags & Flag.Corked) !== 0) return;
    this.flags |= Flag.Corked;
    this.socket.cork();
    corked.push(this);
    if (!flushScheduled) {
      flushScheduled = true;
      process.nextTick(flushCorked);
    }
  }
}
