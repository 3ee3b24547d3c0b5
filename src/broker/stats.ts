/**
 * Plain counters the broker bumps on its paths (no allocation, no labels); the metrics module
 * reads them at scrape time.
 */
export class BrokerStats {
  connectionsLive = 0;
  connectionsTotal = 0;
  /** CONNACK 0 sent. */
  connectionsAccepted = 0;
  /** Sockets closed for sending no CONNECT (or getting no auth verdict) within idle_timeout. */
  connectTimeouts = 0;
  /** Closed connections cut off after mqtt.close_linger: the peer neither closed nor stopped sending. */
  lingerExpired = 0;
  acceptRateLimited = 0;
  acceptMaxConnections = 0;
  messagesRouted = 0;
  /** Offline-queue overflow and QoS 0 dropped for a congested client. */
  dropped = 0;
  sessionsCreated = 0;
  sessionsResumed = 0;
  sessionsTakenOver = 0;
  sessionsExpired = 0;
  willsPublished = 0;
  /** PUBLISH (and wills) refused by the ACL. */
  publishDenied = 0;
  /** Deliveries withheld because the subscriber may not read the topic (ACL), its filter notwithstanding. */
  deliveriesDenied = 0;
  /** CONNECTs answered with an error CONNACK, by 5.0 reason code. */
  readonly connectRefused = new Map<number, number>();
  /** Connections ended for bad input or a protocol violation, by reason label. */
  readonly protocolErrors = new Map<string, number>();

  /** By packet type (index 1..15): packets, and bytes with the fixed header, in and out. */
  readonly packetsIn = new Float64Array(16);
  readonly bytesIn = new Float64Array(16);
  readonly packetsOut = new Float64Array(16);
  readonly bytesOut = new Float64Array(16);
  /** Connection endings by 5.0 reason code: a client's DISCONNECT, and server-initiated ones (any version). */
  readonly clientDisconnects = new Float64Array(256);
  readonly serverDisconnects = new Float64Array(256);

  countIn(type: number, bytes: number): void {
    bump(this.packetsIn, type, 1);
    bump(this.bytesIn, type, bytes);
  }

  countOut(type: number, bytes: number): void {
    bump(this.packetsOut, type, 1);
    bump(this.bytesOut, type, bytes);
  }

  countConnectRefused(reason: number): void {
    this.connectRefused.set(reason, (this.connectRefused.get(reason) ?? 0) + 1);
  }

  countProtocolError(label: string): void {
    this.protocolErrors.set(label, (this.protocolErrors.get(label) ?? 0) + 1);
  }
}

/** Typed-array counters: fixed size, no allocation on the paths that bump them. */
export function bump(counters: Float64Array, index: number, by: number): void {
  counters[index] = (counters[index] as number) + by;
}
