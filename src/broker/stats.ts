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
  /** PUBLISH refused by the ACL. */
  publishDenied = 0;
  /** CONNECTs answered with an error CONNACK, by 5.0 reason code. */
  readonly connectRefused = new Map<number, number>();
  /** Connections ended for bad input or a protocol violation, by reason label. */
  readonly protocolErrors = new Map<string, number>();

  countConnectRefused(reason: number): void {
    this.connectRefused.set(reason, (this.connectRefused.get(reason) ?? 0) + 1);
  }

  countProtocolError(label: string): void {
    this.protocolErrors.set(label, (this.protocolErrors.get(label) ?? 0) + 1);
  }
}
