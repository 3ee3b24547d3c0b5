// One client connection's MQTT state machine. It reads frames, decides, and drives an abstract
// Transport (TCP socket, WebSocket, or a test double): the whole protocol runs on bytes, without
// sockets, and the session it serves is plain data that can move.
import { decodeConnect, decodePacket, decodePublish, UnsupportedVersionError } from '../mqtt/decode.js';
import { encodeAck, encodePacket, encodePublishHeader } from '../mqtt/encode.js';
import { ProtocolError } from '../mqtt/errors.js';
import { FrameReader, type FrameHandler } from '../mqtt/frame-reader.js';
import {
  PacketType,
  type AckPacket,
  type ConnectPacket,
  type DisconnectPacket,
  type Properties,
  type ProtocolVersion,
  type PublishPacket,
  type SubscribePacket,
  type UnsubscribePacket,
} from '../mqtt/packets.js';
import { connackReturnCodeV3, ReasonCode } from '../mqtt/reason-codes.js';
import { varintSize } from '../mqtt/strings.js';
import { parseSharedFilter, topicFilterError, topicNameError } from '../mqtt/topic.js';
import type { AckHolder, DurableAcks } from '../store/durable-acks.js';
import type { PendingCheck } from './auth.js';
import type { Broker, ClientConnection } from './broker.js';
import type { HeldOutput } from './cluster-bridge.js';
import { connacksFor } from './connack.js';
import { NEVER_EXPIRES } from './sessions.js';
import { Message, outgoingProperties } from './message.js';
import type { Delivery, Session, SubscriptionOptions, WillState } from './session.js';
import { bump, DropReason, LimitHit } from './stats.js';
import { TimerNode, WheelTimer } from './timer-wheel.js';

/** What the protocol needs from the connection's I/O owner. Its output can be held back
 *  (HeldOutput): a CONNACK waits until the cluster's peers have been told of the session. */
export interface Transport extends HeldOutput {
  write(buf: Buffer): void;
  /** One PUBLISH: a fresh header and the shared payload, without copying the payload. */
  writePublish(header: Buffer, payload: Buffer): void;
  /** Writes at once, not held for the rest of the turn: for the CONNACK, usually alone in its
   *  turn. Writes after it may still be held; order is kept. Absent: write(). */
  writeNow?(buf: Buffer): void;
  /** Bytes accepted by write() and not yet handed to the kernel. */
  readonly backlog: number;
  /** Calls the protocol's drained() once the backlog is flushed; asked for when the output goes
   *  over the mark, so a connection that never congests carries no drain listener. Absent: the
   *  transport calls drained() on every flush (WebSocket). */
  awaitDrain?(): void;
  /** Flushes what was written, then closes. */
  end(): void;
  /** Closes now, dropping unsent output (a client that does not read would hold it forever). */
  destroy(): void;
  /** Stops reading the client's bytes (a CONNECT waits for its password check or its session);
   *  a transport that cannot stop reading leaves it to the pending-bytes bound. */
  pause(): void;
  resume(): void;
  readonly remoteAddress: string;
  /** The client's port, when the transport knows it (not behind a PROXY header). */
  readonly remotePort?: number | undefined;
  /** An identity the transport established (a verified TLS client certificate's CN): authenticated, and used instead of CONNECT's username. */
  readonly username?: string | undefined;
}

const enum State {
  AwaitingConnect,
  /** Waiting for an asynchronous CONNECT step (password check, session pull): reading is paused. */
  Suspended,
  Connected,
  Closed,
}

/** A client keepalive is up after 1.5 times its interval [MQTT-3.1.2-24]. */
const KEEPALIVE_GRACE = 1.5;

const PINGRESP = Buffer.from([0xd0, 0x00]);

/** A CONNECT the server declines (not a protocol violation): CONNACK with `reason`, then close. */
class ConnectRefused extends Error {
  constructor(
    readonly reason: number,
    why: string,
    readonly properties?: Properties,
  ) {
    super(why);
  }
}

/** A connection's state that most connections never need: kept out of Protocol so an idle 3.1.1
 *  connection does not carry it. */
class RareState {
  /** The client's Maximum Packet Size and Topic Alias Maximum (5.0), 0 for none. */
  clientMaxPacketSize = 0;
  clientTopicAliasMax = 0;
  aliasesIn: Map<number, string> | null = null;
  aliasesOut: Map<string, number> | null = null;
  /** Topic bytes in aliasesOut (mqtt.max_topic_alias_bytes). */
  aliasBytes = 0;
  /** Frames pipelined behind a suspended CONNECT, and their bytes (mqtt.max_pending_bytes). */
  pending: Array<[number, Buffer]> | null = null;
  pendingBytes = 0;
  slowTimer: WheelTimer<Protocol> | null = null;
  /** ms since the output has been over mqtt.max_output_buffer without draining, 0 when not. */
  slowSince = 0;
  /** Connection-level bounds already logged for this client (bit per LimitHit). */
  limitsLogged = 0;
  /** The password check this connection waits for: cancelled if it closes first. */
  authCheck: PendingCheck | null = null;
  /** PUBACK/PUBREC waiting for store writes to be durable, in PUBLISH order; how many of them
   *  are not yet in a DurableAcks batch. */
  heldAcks: Buffer[] | null = null;
  unclaimedAcks = 0;
}

/** A connection is its own wheel timer (its CONNECT deadline, then its keepalive): see fire(). */
export class Protocol extends TimerNode implements FrameHandler, ClientConnection, AckHolder {
  private state = State.AwaitingConnect;
  private version: ProtocolVersion = 4;
  private readonly reader: FrameReader;
  private keepaliveMs = 0;
  private lastReceived: number;
  clientId = '';
  /** For the management API: CONNECT's Clean Start and when CONNACK went out (ms, 0 before). */
  cleanStart = false;
  connectedAt = 0;
  username: string | undefined = undefined;
  session: Session | null = null;
  /** Outgoing QoS 1/2 window (min of the client's Receive Maximum and our max inflight). */
  sendWindow: number;
  /** State of 5.0 options and rare paths, allocated on first use (memory per idle connection). */
  private rare: RareState | null = null;
  /** Bytes this connection counts in the node's pre-CONNECT total (mqtt.max_connecting_bytes). */
  private connectingHeld = 0;
  /** The CONNECT's size while it waits for its verdict. */
  private connectBytes = 0;

  constructor(
    private readonly broker: Broker,
    private readonly transport: Transport,
    now: number,
  ) {
    super();
    const mqtt = broker.config.mqtt;
    this.reader = new FrameReader(this, mqtt.max_connect_size, mqtt.max_packet_size);
    this.sendWindow = mqtt.max_inflight;
    this.lastReceived = now;
    broker.wheel.schedule(this, now + mqtt.idle_timeout * 1000);
    broker.connections.add(this);
  }

  private get cold(): RareState {
    return (this.rare ??= new RareState());
  }

  /** Over the output mark (mqtt.max_output_buffer): QoS 0 is dropped, QoS 1/2 waits in the queue;
   *  a connection that stays over it for mqtt.slow_consumer_timeout is closed. */
  get congested(): boolean {
    if (this.transport.backlog <= this.broker.config.mqtt.max_output_buffer) return false;
    if (this.rare === null || this.rare.slowSince === 0) this.overOutputMark();
    return true;
  }

  private overOutputMark(): void {
    const cold = this.cold;
    cold.slowSince = Date.now();
    if (this.transport.awaitDrain !== undefined) this.transport.awaitDrain();
    const timeout = this.broker.config.mqtt.slow_consumer_timeout;
    if (timeout === 0) return;
    cold.slowTimer ??= new WheelTimer(this, Protocol.checkSlow);
    this.broker.wheel.schedule(cold.slowTimer, cold.slowSince + timeout * 1000);
  }

  private static checkSlow(self: Protocol, now: number): void {
    self.checkSlow(now);
  }

  private checkSlow(now: number): void {
    const cold = this.rare;
    if (this.state !== State.Connected || cold === null || cold.slowSince === 0) return;
    if (this.transport.backlog <= this.broker.config.mqtt.max_output_buffer) {
      cold.slowSince = 0;
      return;
    }
    this.broker.log.debug({ clientId: this.clientId, backlog: this.transport.backlog, overForMs: now - cold.slowSince }, 'slow consumer');
    this.hitLimit(LimitHit.SlowConsumer);
    // Quota exceeded: its share of the node's output memory. The DISCONNECT could only queue
    // behind the output it does not read, so the connection is dropped with that output.
    bump(this.broker.stats.serverDisconnects, ReasonCode.QuotaExceeded, 1);
    this.close(true, true);
  }

  private hitLimit(limit: LimitHit): void {
    const cold = this.cold;
    cold.limitsLogged = this.broker.stats.hitLimit(limit, this.clientId, cold.limitsLogged);
  }

  get connected(): boolean {
    return this.state === State.Connected;
  }

  get protocolVersion(): ProtocolVersion {
    return this.version;
  }

  /** Keep alive in force, in seconds (the Server Keep Alive when one was sent). */
  get keepalive(): number {
    return this.keepaliveMs / 1000;
  }

  get remoteAddress(): string {
    return this.transport.remoteAddress;
  }

  /** Undefined when the transport cannot tell (WebSocket, or behind a PROXY header). */
  get remotePort(): number | undefined {
    return this.transport.remotePort;
  }

  /** Socket bytes in. Any violation ends this connection only. */
  receive(chunk: Buffer): void {
    if (this.state === State.Closed) return;
    try {
      this.reader.push(chunk);
      if (this.state === State.AwaitingConnect || this.state === State.Suspended) this.holdConnecting();
    } catch (err) {
      this.fail(err);
    }
  }

  /**
   * Before CONNACK a connection's bytes count against the node's total (mqtt.max_connecting_bytes):
   * the packet being assembled (its buffer is allocated at its declared length), the CONNECT
   * waiting for its verdict and what was pipelined behind it. Past the total it is refused.
   */
  private holdConnecting(): void {
    const held = this.reader.reserved + this.connectBytes + (this.rare?.pendingBytes ?? 0);
    const stats = this.broker.stats;
    stats.connectingBytes += held - this.connectingHeld;
    this.connectingHeld = held;
    if (held > 0 && stats.connectingBytes > this.broker.config.mqtt.max_connecting_bytes) {
      this.hitLimit(LimitHit.ConnectingBytes);
      throw new ProtocolError(ReasonCode.QuotaExceeded, 'node-wide bytes before CONNACK over mqtt.max_connecting_bytes');
    }
  }

  private releaseConnecting(): void {
    this.broker.stats.connectingBytes -= this.connectingHeld;
    this.connectingHeld = 0;
    this.connectBytes = 0;
    if (this.rare !== null) this.rare.pendingBytes = 0;
  }

  onFrame(header: number, body: Buffer): boolean {
    this.lastReceived = Date.now();
    this.broker.stats.countIn(header >> 4, 1 + varintSize(body.length) + body.length);
    switch (this.state) {
      case State.Connected:
        this.onPacket(header, body);
        break;
      case State.AwaitingConnect:
        // Level byte of an "MQTT" CONNECT: a bad 5.0 CONNECT is then answered with a CONNACK
        // reason code before the close (spec 4.13.1), 3.x with a plain close.
        if (body[6] === 5) this.version = 5;
        this.connectBytes = body.length;
        this.onConnect(decodeConnect(body));
        break;
      case State.Suspended:
        // Clients may send before CONNACK arrives. The transport is paused, so only the rest of
        // the chunk being read lands here (a WebSocket cannot pause: its bound is this one).
        const cold = this.cold;
        cold.pendingBytes += body.length;
        if (cold.pending === null || cold.pendingBytes > this.broker.config.mqtt.max_pending_bytes) {
          this.hitLimit(LimitHit.PendingBytes);
          throw new ProtocolError(ReasonCode.QuotaExceeded, 'bytes sent before CONNACK over mqtt.max_pending_bytes');
        }
        cold.pending.push([header, body]);
        break;
      case State.Closed:
        break;
    }
    return this.state !== State.Closed;
  }

  private onPacket(header: number, body: Buffer): void {
    if (header >> 4 === PacketType.PUBLISH) {
      this.onPublish(decodePublish(header, body, this.version));
      return;
    }
    const packet = decodePacket(header, body, this.version);
    switch (packet.type) {
      case PacketType.PUBACK:
      case PacketType.PUBCOMP:
        (this.session as Session).complete(packet.packetId, this.broker.limits, this.broker.stats);
        break;
      case PacketType.PUBREC:
        this.onPubrec(packet);
        break;
      case PacketType.PUBREL:
        this.onPubrel(packet);
        break;
      case PacketType.SUBSCRIBE:
        this.onSubscribe(packet);
        break;
      case PacketType.UNSUBSCRIBE:
        this.onUnsubscribe(packet);
        break;
      case PacketType.PINGREQ:
        this.send(PINGRESP);
        break;
      case PacketType.DISCONNECT:
        this.onDisconnect(packet);
        break;
      case PacketType.CONNECT:
        throw new ProtocolError(ReasonCode.ProtocolError, 'second CONNECT'); // [MQTT-3.1.0-2]
      case PacketType.AUTH:
        // No enhanced authentication method is offered, so AUTH is never expected [MQTT-4.12.0-1].
        throw new ProtocolError(ReasonCode.ProtocolError, 'AUTH without an authentication method');
      default:
        throw new ProtocolError(ReasonCode.ProtocolError, `packet type ${packet.type} is sent by servers only`);
    }
  }

  // ---- CONNECT: validate -> authenticate -> pull session -> open -> CONNACK --------------------
  // A step refuses by throwing ConnectRefused: fail() is the one exit (refuse() counts and logs).
  // An asynchronous step (a password check, a session pull) suspends the connection.

  private onConnect(c: ConnectPacket): void {
    this.version = c.protocolVersion;
    const assigned = this.validateConnect(c);
    this.authenticate(c, assigned);
  }

  /** What the CONNECT asks for is acceptable here; sets the client id. Returns whether it was assigned. */
  private validateConnect(c: ConnectPacket): boolean {
    const refusal = this.broker.connectRefusal;
    if (refusal !== null) {
      // Evacuating: refused before authentication, 5.0 with 0x9C (+ Server Reference), 3.x code 3 (SPEC 5).
      refusal.refused++;
      throw new ConnectRefused(ReasonCode.UseAnotherServer, 'node is evacuating', refusal.properties);
    }
    const mqtt = this.broker.config.mqtt;
    let clientId = c.clientId;
    let assigned = false;
    if (clientId.length === 0) {
      // [MQTT-3.1.3-8] 3.1.1 needs Clean Session for an empty id; 3.1 needs an id.
      if (this.version === 3 || (this.version === 4 && !c.cleanStart)) throw new ConnectRefused(ReasonCode.ClientIdentifierNotValid, 'empty client id');
      clientId = this.broker.assignClientId();
      assigned = this.version === 5; // [MQTT-3.2.2-16]
    } else if (clientId.length > mqtt.max_client_id_length) {
      throw new ConnectRefused(ReasonCode.ClientIdentifierNotValid, 'client id too long');
    }
    if (c.properties?.authenticationMethod !== undefined) {
      throw new ConnectRefused(ReasonCode.BadAuthenticationMethod, 'enhanced authentication is not supported');
    }
    const will = c.will;
    if (will !== undefined) {
      const why = topicNameError(will.topic, mqtt.max_topic_levels);
      // A malformed CONNECT: 3.x closes without CONNACK [MQTT-3.1.4-1], 5.0 answers 0x90 first (fail()).
      if (why !== undefined) throw new ProtocolError(ReasonCode.TopicNameInvalid, `will topic: ${why}`);
      if (will.qos > mqtt.max_qos) throw new ConnectRefused(ReasonCode.QoSNotSupported, 'will QoS not supported'); // [MQTT-3.2.2-12]
      if (will.retain && !mqtt.retain_available) throw new ConnectRefused(ReasonCode.RetainNotSupported, 'retain not supported'); // [MQTT-3.2.2-13]
    }
    this.clientId = clientId;
    return assigned;
  }

  private authenticate(c: ConnectPacket, assigned: boolean): void {
    // A verified client certificate authenticates its CN; the password file is for the rest.
    const certified = this.transport.username;
    this.username = certified ?? c.username;
    const verdict = certified !== undefined || this.broker.authenticator.authenticate(this.clientId, c.username, c.password, this.transport);
    if (verdict === true) return this.pullSession(c, assigned);
    if (verdict === false) throw new ConnectRefused(ReasonCode.BadUserNameOrPassword, 'authentication failed');
    // Over auth.max_pending_checks, or a source address with too many failed logins: try later.
    if (verdict === 'busy') throw new ConnectRefused(ReasonCode.ServerBusy, 'too many password checks pending');
    if (verdict === 'throttled') throw new ConnectRefused(ReasonCode.ServerBusy, 'too many failed logins from this address');
    this.cold.authCheck = verdict;
    // Never rejects: a failing scrypt counts as a wrong password (auth.ts).
    this.suspend(verdict.result, (ok) => {
      this.cold.authCheck = null;
      if (!ok) throw new ConnectRefused(ReasonCode.BadUserNameOrPassword, 'authentication failed');
      this.pullSession(c, assigned);
    });
  }

  /** Authenticated: the will passes the publish ACL; a session another node holds comes over first (SPEC 4). */
  private pullSession(c: ConnectPacket, assigned: boolean): void {
    // Under the authenticated identity (as Mosquitto).
    if (c.will !== undefined && !this.broker.acl.check('publish', this.clientId, this.username, c.will.topic)) {
      this.broker.stats.publishDenied++;
      throw new ConnectRefused(ReasonCode.NotAuthorized, 'will topic not authorized');
    }
    const cluster = this.broker.cluster;
    const pull = cluster === null || this.broker.sessions.has(this.clientId) ? null : cluster.pullSession(this.clientId, c.cleanStart);
    if (pull === null) return this.open(c, assigned);
    const pulled = pull.then(
      () => true,
      (err: unknown) => {
        this.broker.log.warn({ err, clientId: this.clientId }, 'session takeover from another node failed');
        return false;
      },
    );
    this.suspend(pulled, (ok) => {
      if (!ok) throw new ConnectRefused(ReasonCode.ServerUnavailable, 'session takeover failed');
      this.open(c, assigned);
    });
  }

  /**
   * Waits for an asynchronous CONNECT step: reading pauses and what the client pipelined waits
   * (bounded by mqtt.max_pending_bytes); then `next` runs, and after it the waiting packets.
   */
  private suspend<T>(wait: Promise<T>, next: (value: T) => void): void {
    this.state = State.Suspended;
    this.cold.pending ??= [];
    this.transport.pause();
    void wait.then((value) => {
      if (this.state !== State.Suspended) return; // closed meanwhile
      try {
        next(value);
      } catch (err) {
        this.fail(err);
        return;
      }
      this.replayPending();
    });
  }

  /** Opens the session and answers CONNACK. */
  private open(c: ConnectPacket, assigned: boolean): void {
    const mqtt = this.broker.config.mqtt;
    const props = c.properties;
    const now = Date.now();
    let expiry: number;
    if (this.version === 5) expiry = props?.sessionExpiryInterval ?? 0;
    else expiry = c.cleanStart ? 0 : NEVER_EXPIRES; // 3.x: a persistent session lasts until cleaned
    const cappedExpiry = Math.min(expiry, mqtt.session_expiry_max);
    let will: WillState | undefined;
    // A copy of the will payload: a view would pin the CONNECT's whole read chunk for the session's life.
    if (c.will !== undefined) will = { ...c.will, payload: Buffer.from(c.will.payload), delay: c.will.properties?.willDelayInterval ?? 0 };
    if (props !== undefined) {
      if (props.receiveMaximum !== undefined) this.sendWindow = Math.min(props.receiveMaximum, mqtt.max_inflight);
      if (props.maximumPacketSize !== undefined) this.cold.clientMaxPacketSize = props.maximumPacketSize;
      if (props.topicAliasMaximum !== undefined) this.cold.clientTopicAliasMax = props.topicAliasMaximum;
    }

    const { session, present } = this.broker.sessions.open(
      { clientId: this.clientId, username: this.username, cleanStart: c.cleanStart, expiryInterval: cappedExpiry, will },
      now,
    );
    this.session = session;
    this.state = State.Connected;
    this.releaseConnecting();
    if (this.broker.cluster !== null) this.broker.cluster.holdConnack(this.clientId, this.transport);

    let keepalive = c.keepalive;
    let serverKeepAlive: number | undefined;
    if (this.version === 5 && (keepalive > mqtt.max_keepalive || (keepalive === 0 && mqtt.max_keepalive < 65535))) {
      // Server Keep Alive tells a 5.0 client the interval it must use [MQTT-3.2.2-21]; a 3.x
      // client cannot be told, so it keeps its own.
      keepalive = mqtt.max_keepalive;
      serverKeepAlive = keepalive;
    }
    this.keepaliveMs = keepalive * 1000;

    let extra: Properties | undefined;
    if (this.version === 5 && (assigned || serverKeepAlive !== undefined || cappedExpiry !== expiry)) {
      extra = {};
      if (assigned) extra.assignedClientIdentifier = this.clientId;
      if (serverKeepAlive !== undefined) extra.serverKeepAlive = serverKeepAlive;
      if (cappedExpiry !== expiry) extra.sessionExpiryInterval = cappedExpiry;
    }
    this.sendConnack(connacksFor(this.broker.config.mqtt).get(this.version, present, extra));
    this.broker.stats.connectionsAccepted++;
    // The level check first: the default connect path builds no log object.
    if (this.broker.log.isLevelEnabled('debug')) {
      this.broker.log.debug({ clientId: this.clientId, address: this.transport.remoteAddress }, 'client connected');
    }
    this.scheduleKeepalive(now);
    this.cleanStart = c.cleanStart;
    this.connectedAt = now;
    session.attach(this, this.broker.limits, this.broker.stats);
  }

  private replayPending(): void {
    if (this.state !== State.Connected) return; // refused, or still waiting for a session pull
    const pending = this.rare?.pending ?? [];
    if (this.rare !== null) this.rare.pending = null;
    this.transport.resume();
    try {
      for (const [header, body] of pending) {
        if (this.state !== State.Connected) return;
        this.onPacket(header, body);
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** CONNACK with an error, then close: the session was never opened. */
  private refuse(reason: number, why: string, properties?: Properties): void {
    this.broker.stats.countConnectRefused(reason);
    this.broker.log.debug({ clientId: this.clientId, reason, why }, 'connect refused');
    const v5 = this.version === 5;
    const code = v5 ? reason : connackReturnCodeV3(reason);
    this.sendConnack(encodePacket({ type: PacketType.CONNACK, sessionPresent: false, reasonCode: code, properties: v5 ? properties : undefined }, this.version));
    this.close(false);
  }

  // ---- PUBLISH in ---------------------------------------------------------------------------

  private onPublish(p: PublishPacket): void {
    const mqtt = this.broker.config.mqtt;
    const session = this.session as Session;
    let topic = p.topic;
    let properties = p.properties;
    if (properties !== undefined) {
      const alias = properties.topicAlias;
      if (alias !== undefined) {
        if (alias > mqtt.max_topic_alias) throw new ProtocolError(ReasonCode.TopicAliasInvalid, 'topic alias out of range'); // [MQTT-3.3.2-9]
        if (topic.length > 0) (this.cold.aliasesIn ??= new Map()).set(alias, topic);
        else {
          const known = this.rare?.aliasesIn?.get(alias);
          if (known === undefined) throw new ProtocolError(ReasonCode.ProtocolError, 'unknown topic alias');
          topic = known;
        }
        const { topicAlias: _alias, ...rest } = properties;
        properties = rest;
      }
      if (properties.subscriptionIdentifiers !== undefined) {
        throw new ProtocolError(ReasonCode.ProtocolError, 'Subscription Identifier in a client PUBLISH'); // [MQTT-3.3.4-6]
      }
    }
    const why = topicNameError(topic, mqtt.max_topic_levels);
    if (why !== undefined) throw new ProtocolError(ReasonCode.TopicNameInvalid, why);
    if (p.qos > mqtt.max_qos) throw new ProtocolError(ReasonCode.QoSNotSupported, 'QoS not supported'); // [MQTT-3.2.2-11]
    if (p.retain && !mqtt.retain_available) throw new ProtocolError(ReasonCode.RetainNotSupported, 'retain not supported'); // [MQTT-3.2.2-14]

    if (p.qos === 2) {
      if (session.incomingQos2.has(p.packetId)) {
        // A resent QoS 2 PUBLISH already routed: acknowledge again, deliver nothing [MQTT-4.3.3-9].
        // Its id is durable once the first PUBREC went out; while that one is held, this waits behind it.
        this.ack(encodeAck(PacketType.PUBREC, p.packetId, 0, this.version), this.broker.store?.writes ?? 0);
        return;
      }
      // Only a 5.0 client was told our Receive Maximum; a 3.x one is bounded by its 65535 ids.
      if (this.version === 5 && session.incomingQos2.size >= mqtt.max_inflight) {
        throw new ProtocolError(ReasonCode.ReceiveMaximumExceeded, 'receive maximum exceeded'); // [MQTT-3.3.4-9]
      }
    }
    const store = this.broker.store;
    // Store writes issued so far: if routing adds any, the ack waits for them (never for QoS 0).
    const writes = p.qos === 0 || store === null ? 0 : store.writes;
    let reason = 0;
    if (this.broker.acl.check('publish', this.clientId, this.username, topic)) {
      const expiry = properties?.messageExpiryInterval;
      const expiresAt = expiry === undefined ? 0 : Date.now() + expiry * 1000;
      const matched = this.broker.router.publish(new Message(topic, p.payload, p.qos, p.retain, properties, expiresAt, this.clientId, false));
      if (matched === 0 && this.version === 5) reason = ReasonCode.NoMatchingSubscribers;
    } else {
      this.broker.stats.publishDenied++;
      // 5.0 says why; 3.1.1 has no way to, so the message is dropped and acknowledged.
      if (this.version === 5) reason = ReasonCode.NotAuthorized;
    }
    if (p.qos === 1) this.ack(encodeAck(PacketType.PUBACK, p.packetId, reason, this.version), writes);
    else if (p.qos === 2) {
      if (reason < 0x80) {
        session.addIncoming(p.packetId);
        if (session.journal !== null) session.journal.incoming(p.packetId, true);
      }
      this.ack(encodeAck(PacketType.PUBREC, p.packetId, reason, this.version), writes);
    }
  }

  /**
   * Sends a PUBACK/PUBREC now, or, when the store was written since `writesBefore` (a persistent
   * session got the message), after those writes are durable. Once one ack waits, later ones wait
   * behind it: acks go out in the order of their PUBLISHes [MQTT-4.6.0-2] [MQTT-4.6.0-3].
   */
  private ack(packet: Buffer, writesBefore: number): void {
    const store = this.broker.store;
    const held = this.rare?.heldAcks;
    if (store === null || ((held === undefined || held === null || held.length === 0) && store.writes === writesBefore)) {
      this.send(packet);
      return;
    }
    const cold = this.cold;
    (cold.heldAcks ??= []).push(packet);
    if (cold.unclaimedAcks++ === 0) (this.broker.durableAcks as DurableAcks).hold(this);
  }

  claimHeldAcks(): number {
    const cold = this.cold;
    const n = cold.unclaimedAcks;
    cold.unclaimedAcks = 0;
    return n;
  }

  releaseAcks(count: number): void {
    const acks = (this.cold.heldAcks as Buffer[]).splice(0, count);
    if (this.state === State.Closed) return;
    for (const packet of acks) this.send(packet);
  }

  private onPubrel(p: AckPacket): void {
    const session = this.session as Session;
    const found = session.releaseIncoming(p.packetId);
    if (found && session.journal !== null) session.journal.incoming(p.packetId, false);
    const reason = found || this.version < 5 ? 0 : ReasonCode.PacketIdentifierNotFound;
    this.send(encodeAck(PacketType.PUBCOMP, p.packetId, reason, this.version));
  }

  private onPubrec(p: AckPacket): void {
    const session = this.session as Session;
    if (p.reasonCode >= 0x80) {
      session.complete(p.packetId, this.broker.limits, this.broker.stats); // the receiver refused it: the flow ends here [MQTT-4.3.3-?]
      return;
    }
    const known = session.received(p.packetId);
    const reason = known || this.version < 5 ? 0 : ReasonCode.PacketIdentifierNotFound;
    this.send(encodeAck(PacketType.PUBREL, p.packetId, reason, this.version));
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------------

  private onSubscribe(p: SubscribePacket): void {
    const mqtt = this.broker.config.mqtt;
    const session = this.session as Session;
    const subscriptionId = p.properties?.subscriptionIdentifiers?.[0] ?? 0;
    const codes: number[] = [];
    const granted: Array<[string, SubscriptionOptions, boolean]> = [];
    for (const req of p.subscriptions) {
      const shared = parseSharedFilter(req.filter);
      const filter = typeof shared === 'object' ? shared.filter : req.filter;
      let code: number = Math.min(req.qos, mqtt.max_qos);
      if (mqtt.max_subscriptions > 0 && session.subscriptions.size >= mqtt.max_subscriptions && !session.subscriptions.has(req.filter)) {
        code = ReasonCode.QuotaExceeded; // 3.x: 0x80 below
        session.limitHit(LimitHit.Subscriptions, this.broker.stats);
      } else if (typeof shared === 'string' || topicFilterError(filter, mqtt.max_topic_levels) !== undefined) {
        code = ReasonCode.TopicFilterInvalid;
      } else if (shared !== undefined && req.noLocal) {
        throw new ProtocolError(ReasonCode.ProtocolError, 'No Local on a shared subscription'); // [MQTT-3.8.3-4]
      } else if (shared !== undefined && !mqtt.shared_subscriptions) {
        code = ReasonCode.SharedSubscriptionsNotSupported;
      } else if (!mqtt.wildcard_subscriptions && /[+#]/.test(filter)) {
        code = ReasonCode.WildcardSubscriptionsNotSupported;
      } else if (subscriptionId !== 0 && !mqtt.subscription_identifiers) {
        code = ReasonCode.SubscriptionIdentifiersNotSupported;
      } else if (!this.broker.acl.check('subscribe', this.clientId, this.username, req.filter)) {
        code = ReasonCode.NotAuthorized;
      }
      if (code < 0x80) {
        const options: SubscriptionOptions = {
          qos: code as 0 | 1 | 2,
          noLocal: req.noLocal,
          retainAsPublished: req.retainAsPublished,
          retainHandling: req.retainHandling,
          subscriptionId,
        };
        const existed = this.broker.router.subscribe(session, req.filter, options);
        // [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]; never for shared subscriptions.
        const sendRetained = shared === undefined && (req.retainHandling === 0 || (req.retainHandling === 1 && !existed));
        if (sendRetained) granted.push([filter, options, true]);
      }
      codes.push(this.version === 5 || code < 0x80 ? code : 0x80); // 3.x has one failure code
    }
    this.broker.sessions.save(session);
    this.send(encodePacket({ type: PacketType.SUBACK, packetId: p.packetId, reasonCodes: codes }, this.version));
    for (const [filter, options] of granted) this.broker.router.sendRetained(session, filter, options);
  }

  private onUnsubscribe(p: UnsubscribePacket): void {
    const session = this.session as Session;
    const codes = p.filters.map((f) => (this.broker.router.unsubscribe(session, f) ? 0 : ReasonCode.NoSubscriptionExisted));
    this.broker.sessions.save(session);
    this.send(
      encodePacket({ type: PacketType.UNSUBACK, packetId: p.packetId, reasonCodes: this.version === 5 ? codes : [] }, this.version),
    );
  }

  // ---- DISCONNECT and endings --------------------------------------------------------------

  private onDisconnect(p: DisconnectPacket): void {
    const session = this.session as Session;
    const expiry = p.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      // [MQTT-3.14.2-2] a session that was to end with the connection cannot be extended now.
      if (session.expiryInterval === 0 && expiry !== 0) {
        throw new ProtocolError(ReasonCode.ProtocolError, 'Session Expiry Interval set on DISCONNECT after 0');
      }
      session.expiryInterval = Math.min(expiry, this.broker.config.mqtt.session_expiry_max);
    }
    // 0x04 asks for the will; any other DISCONNECT deletes it [MQTT-3.14.4-3].
    bump(this.broker.stats.clientDisconnects, p.reasonCode, 1);
    this.close(p.reasonCode === ReasonCode.DisconnectWithWill);
  }

  /** Another connection took the session: 5.0 DISCONNECT 0x8E, and no will (SPEC 4). */
  takenOver(): void {
    this.disconnect(ReasonCode.SessionTakenOver, false);
  }

  /**
   * Server-initiated disconnect: 5.0 gets a DISCONNECT with `reason` (and `properties`, e.g. a
   * Server Reference), 3.x is closed.
   */
  disconnect(reason: number, publishWill: boolean, properties?: Properties): void {
    if (this.state === State.Closed) return;
    bump(this.broker.stats.serverDisconnects, reason, 1);
    if (this.version === 5 && this.state === State.Connected) {
      this.send(encodePacket({ type: PacketType.DISCONNECT, reasonCode: reason, properties }, 5));
    }
    this.close(publishWill);
  }

  /** The one exit for bad input and refused CONNECTs: reason code on the wire (5.0), a counter, a log line. */
  private fail(err: unknown): void {
    if (err instanceof ConnectRefused) {
      this.refuse(err.reason, err.message, err.properties);
      return;
    }
    if (!(err instanceof ProtocolError)) {
      this.broker.log.error({ err, clientId: this.clientId }, 'internal error handling a packet');
      this.disconnect(ReasonCode.ImplementationSpecificError, true);
      return;
    }
    this.broker.stats.countProtocolError(err.label);
    this.broker.log.debug({ clientId: this.clientId, reason: err.label, why: err.message }, 'protocol error');
    if (this.state === State.AwaitingConnect || this.state === State.Suspended) {
      if (err instanceof UnsupportedVersionError) {
        // Answer in the client's own version: 5.0 reason 0x84, 3.x return code 1 [MQTT-3.1.2-2].
        this.version = err.protocolVersion === 5 ? 5 : 4;
        this.refuse(err.reason, err.message);
      } else if (this.version === 5) {
        this.refuse(err.reason, err.message);
      } else {
        this.close(false);
      }
      return;
    }
    this.disconnect(err.reason, true);
  }

  /** The transport closed under us (peer gone, reset, error): an abnormal end, will included. */
  transportClosed(): void {
    this.close(true);
  }

  /** `abort`: drop unsent output instead of flushing it (a client that does not read). */
  private close(publishWill: boolean, abort = false): void {
    if (this.state === State.Closed) return;
    const wasConnected = this.state === State.Connected;
    this.state = State.Closed;
    const rare = this.rare;
    if (rare !== null && rare.authCheck !== null) {
      rare.authCheck.cancel();
      rare.authCheck = null;
    }
    this.broker.connections.delete(this);
    this.broker.wheel.cancel(this);
    if (rare !== null && rare.slowTimer !== null) this.broker.wheel.cancel(rare.slowTimer);
    if (this.connectingHeld > 0) this.releaseConnecting();
    if (abort) this.transport.destroy();
    else this.transport.end();
    const session = this.session;
    if (wasConnected && session !== null && session.owner === this) {
      this.broker.sessions.close(session, publishWill, Date.now());
    }
  }

  private scheduleKeepalive(now: number): void {
    if (this.keepaliveMs === 0) this.broker.wheel.cancel(this);
    else this.broker.wheel.schedule(this, now + this.keepaliveMs * KEEPALIVE_GRACE);
  }

  /** @internal The wheel: the CONNECT deadline or the keepalive is due. */
  fire(now: number): void {
    if (this.state !== State.Connected) {
      // No CONNECT (or no auth verdict) within the deadline.
      this.broker.stats.connectTimeouts++;
      this.close(false);
      return;
    }
    const idle = now - this.lastReceived;
    if (idle >= this.keepaliveMs * KEEPALIVE_GRACE) this.disconnect(ReasonCode.KeepAliveTimeout, true);
    else this.scheduleKeepalive(this.lastReceived);
  }

  // ---- PUBLISH out (SessionOwner) ----------------------------------------------------------

  sendPublish(d: Delivery, packetId: number, dup: boolean): boolean {
    const message = d.message;
    let properties = outgoingProperties(message, Date.now());
    if (properties === null) {
      (this.session as Session).countDrop(DropReason.Expired, this.broker.stats); // [MQTT-3.3.2-5]
      return false;
    }
    let topic = message.topic;
    let newAlias = 0;
    if (this.version === 5) {
      const ids = d.subscriptionId;
      if (ids !== 0) properties = { ...properties, subscriptionIdentifiers: typeof ids === 'number' ? [ids] : ids };
      const rare = this.rare;
      if (rare !== null && rare.clientTopicAliasMax > 0) {
        // Aliases are handed out first come, up to the client's Topic Alias Maximum.
        const aliases = (rare.aliasesOut ??= new Map());
        const alias = aliases.get(topic);
        if (alias !== undefined) {
          properties = { ...properties, topicAlias: alias };
          topic = '';
        } else if (aliases.size < rare.clientTopicAliasMax) {
          if (rare.aliasBytes + topic.length <= this.broker.config.mqtt.max_topic_alias_bytes) {
            newAlias = aliases.size + 1;
            properties = { ...properties, topicAlias: newAlias };
          } else (this.session as Session).limitHit(LimitHit.TopicAliasBytes, this.broker.stats);
        }
      }
    } else properties = undefined;
    const header = encodePublishHeader(topic, d.qos, d.retain, dup, packetId, properties, message.payload.length, this.version);
    const maxSize = this.rare?.clientMaxPacketSize ?? 0;
    if (maxSize > 0 && header.length + message.payload.length > maxSize) {
      (this.session as Session).countDrop(DropReason.TooLarge, this.broker.stats); // [MQTT-3.1.2-25] discarded as if delivered
      return false;
    }
    if (newAlias !== 0) {
      const rare = this.cold;
      rare.aliasesOut?.set(topic, newAlias);
      rare.aliasBytes += topic.length;
    }
    this.broker.stats.countOut(PacketType.PUBLISH, header.length + message.payload.length);
    this.transport.writePublish(header, message.payload);
    return true;
  }

  /** Every packet but PUBLISH leaves here: one whole packet per buffer, counted by its type. */
  private send(packet: Buffer): void {
    this.broker.stats.countOut((packet[0] as number) >> 4, packet.length);
    this.transport.write(packet);
  }

  private sendConnack(packet: Buffer): void {
    this.broker.stats.countOut(PacketType.CONNACK, packet.length);
    if (this.transport.writeNow !== undefined) this.transport.writeNow(packet);
    else this.transport.write(packet);
  }

  sendPubrel(packetId: number): void {
    this.send(encodeAck(PacketType.PUBREL, packetId, 0, this.version));
  }

  /**
   * The transport flushed its backlog. Deliveries queued while it was congested are sent now:
   * with nothing in flight no acknowledgement would ever drain them.
   */
  drained(): void {
    const cold = this.rare;
    if (cold !== null && cold.slowSince !== 0 && this.transport.backlog <= this.broker.config.mqtt.max_output_buffer) {
      cold.slowSince = 0;
      if (cold.slowTimer !== null) this.broker.wheel.cancel(cold.slowTimer);
    }
    const session = this.session;
    if (this.state === State.Connected && session !== null && session.owner === this) session.drain(this, this.broker.limits, this.broker.stats);
  }
}
