import type { Properties } from '../mqtt/packets.js';
import { ReasonCode } from '../mqtt/reason-codes.js';
import { restoreSession, SessionJournal, toMessage } from './session-journal.js';
import type { ClientConnection } from './broker.js';
import { Message } from './message.js';
import type { Router, RouterContext } from './router.js';
import { Session, type SubscriptionOptions, type WillState } from './session.js';
import { TimerNode, type TimerWheel } from './timer-wheel.js';

/** Session Expiry Interval meaning "never expires" [MQTT-3.1.2-?] (0xFFFFFFFF). */
export const NEVER_EXPIRES = 0xffffffff;

const enum SessionEnd {
  Expiry,
  Will,
}

/** A disconnected session's expiry or delayed will on the wheel: the session and its manager,
 *  no closure per session. */
class SessionTimer extends TimerNode {
  constructor(
    private readonly sessions: Sessions,
    private readonly session: Session,
    private readonly end: SessionEnd,
  ) {
    super();
  }

  fire(): void {
    this.sessions.timerDue(this.session, this.end);
  }
}

/** What a connection asks for when it opens a session. */
export interface SessionRequest {
  clientId: string;
  username: string | undefined;
  cleanStart: boolean;
  expiryInterval: number;
  will: WillState | undefined;
}

/** What the session manager needs of the node around it. */
export interface SessionsContext extends RouterContext {
  readonly wheel: TimerWheel;
  readonly router: Router;
}

/**
 * The sessions of one node and their lifecycle: open (resume, replace, take from a live
 * connection), close, expire, wills, handover to another node, persistence, restore at start.
 * The map is its own: others read it through get/has/size/values.
 */
export class Sessions {
  private readonly map = new Map<string, Session>();

  constructor(private readonly ctx: SessionsContext) {}

  get size(): number {
    return this.map.size;
  }

  get(clientId: string): Session | undefined {
    return this.map.get(clientId);
  }

  has(clientId: string): boolean {
    return this.map.has(clientId);
  }

  values(): IterableIterator<Session> {
    return this.map.values();
  }

  /**
   * Opens the session for a connection that has passed authentication: takes it from a live
   * connection if there is one, resumes or replaces it per Clean Start [MQTT-3.1.2-4]
   * [MQTT-3.1.2-5]. The caller attaches its connection after sending CONNACK.
   */
  open(req: SessionRequest, now: number): { session: Session; present: boolean } {
    const { stats } = this.ctx;
    let session = this.map.get(req.clientId);
    if (session !== undefined) {
      const owner = session.owner;
      if (owner !== null) {
        (owner as ClientConnection).takenOver();
        stats.sessionsTakenOver++;
      }
      this.cancelTimers(session);
      if (this.map.get(req.clientId) !== session) {
        // An expiry-0 session ended with the connection just taken over: nothing to resume, and
        // Session Present must be 0 [MQTT-3.2.2-2].
        session = undefined;
      } else if (req.cleanStart) {
        // The old session ends here: a will still waiting for its delay is due now [MQTT-3.1.3-9].
        if (session.will !== undefined && owner === null) this.publishWill(session);
        this.discard(session);
        session = undefined;
      } else {
        // Resumed before the will delay ran out: the will is not sent [MQTT-3.1.3-9].
        stats.sessionsResumed++;
      }
    }
    const present = session !== undefined;
    if (session === undefined) {
      session = new Session(req.clientId, req.expiryInterval, now);
      this.map.set(req.clientId, session);
      stats.sessionsCreated++;
    }
    session.expiryInterval = req.expiryInterval;
    session.will = req.will;
    if (session.username !== req.username) {
      session.username = req.username;
      // Another identity resumes it: its subscriptions' read checks are decided again.
      this.ctx.router.resubscribe(session);
    }
    // Connected from here on: stored so, a crash restarts its expiry clock at the restart.
    session.disconnectedAt = 0;
    this.persist(session);
    if (this.ctx.cluster !== null) this.ctx.cluster.sessionOpened(session);
    return { session, present };
  }

  /** Installs a session taken over from another node, disconnected, with its subscriptions. */
  adopt(session: Session, subscriptions: ReadonlyArray<[string, SubscriptionOptions]>): void {
    this.map.set(session.clientId, session);
    for (const [filter, options] of subscriptions) this.ctx.router.subscribe(session, filter, options);
  }

  /**
   * Another node takes this client's session: the live connection ends (5.0 DISCONNECT 0x8E, no
   * will) and the session stops its timers while it is handed over. Undefined when there is no
   * session left to hand over (none, or one that ended with its connection).
   */
  handOver(clientId: string): Session | undefined {
    const session = this.map.get(clientId);
    if (session === undefined) return undefined;
    if (session.owner !== null) {
      (session.owner as ClientConnection).takenOver();
      this.ctx.stats.sessionsTakenOver++;
    }
    if (this.map.get(clientId) !== session) return undefined;
    this.cancelTimers(session);
    return session;
  }

  /** The end of a handOver: `moved`, the session is gone from here (no will); else it stays,
   *  disconnected, with its timers running again. */
  endHandOver(session: Session, moved: boolean, now: number): void {
    if (moved) {
      session.will = undefined;
      this.discard(session);
    } else if (session.owner === null && this.map.get(session.clientId) === session) {
      this.scheduleEnd(session, now);
    }
  }

  /** Keeps the store in step with whether the session outlives its connection (SPEC 3). */
  private persist(session: Session): void {
    const store = this.ctx.store;
    if (store === null) return;
    const journal = session.journal;
    if (session.expiryInterval === 0) {
      // It ends with its connection: a stored copy would outlive it.
      if (journal !== null) {
        journal.delete(session);
        session.journal = null;
      }
      return;
    }
    if (journal !== null) journal.save(session);
    else {
      session.journal = new SessionJournal(store, store.allocateSid(), 0);
      session.journal.saveAll(session);
    }
  }

  /** Writes a persistent session's header after its subscriptions changed. */
  save(session: Session): void {
    if (session.journal !== null) session.journal.save(session);
  }

  /**
   * Loads the store at start: retained messages, and the persistent sessions, disconnected, with
   * their expiry clocks restarted from the stored disconnect time; expired ones are dropped (their
   * entries are deleted in the background by the store's sweep).
   */
  restore(now: number): { sessions: number; expired: number; retained: number } {
    const counts = { sessions: 0, expired: 0, retained: 0 };
    const { store, router } = this.ctx;
    if (store === null) return counts;
    for (const stored of store.loadRetained()) {
      if (stored.expiresAt !== 0 && stored.expiresAt <= now) store.deleteRetained(stored.topic);
      else {
        router.restoreRetained(toMessage(stored));
        counts.retained++;
      }
    }
    const restored: Session[] = [];
    /** Expired while the node was down with their wills still pending. */
    const ended: Session[] = [];
    for (const stored of store.loadSessions()) {
      const session = restoreSession(stored, store, now, { limits: this.ctx.limits, stats: this.ctx.stats });
      const expiry = session.expiryInterval;
      if (expiry !== NEVER_EXPIRES && session.disconnectedAt + expiry * 1000 <= now) {
        if (session.will !== undefined) ended.push(session);
        else store.deleteSession(session.clientId, stored.sid);
        counts.expired++;
        continue;
      }
      this.map.set(session.clientId, session);
      for (const [filter, options] of stored.record.subscriptions) router.subscribe(session, filter, options);
      restored.push(session);
    }
    // Every subscriber is in place before an overdue will goes out.
    for (const session of restored) this.scheduleEnd(session, now);
    // The session ended while the node was down, and its will with it [MQTT-3.1.3-9]: published
    // now, once (the stored will is gone with the session), before the session is discarded.
    for (const session of ended) {
      this.publishWill(session);
      this.discard(session);
    }
    counts.sessions = restored.length;
    return counts;
  }

  /**
   * A session's connection has ended. A session with expiry 0 ends now; otherwise it waits,
   * disconnected, for its expiry. With `publishWill`, the will goes out now or after its delay,
   * whichever of delay and session end comes first [MQTT-3.1.3-9]; without, it is dropped
   * (normal DISCONNECT [MQTT-3.14.4-3], or a takeover).
   */
  close(session: Session, publishWill: boolean, now: number): void {
    session.detach(now);
    if (!publishWill) session.will = undefined;
    if (session.expiryInterval === 0) {
      if (session.will !== undefined) this.publishWill(session);
      this.discard(session);
      return;
    }
    if (session.journal !== null) session.journal.save(session);
    this.scheduleEnd(session, now);
  }

  /** Expiry and will timers of a disconnected session, counted from its disconnect time. */
  private scheduleEnd(session: Session, now: number): void {
    const since = session.disconnectedAt;
    const wheel = this.ctx.wheel;
    if (session.expiryInterval !== NEVER_EXPIRES) {
      session.expiryTimer ??= new SessionTimer(this, session, SessionEnd.Expiry);
      wheel.schedule(session.expiryTimer, since + session.expiryInterval * 1000);
    }
    const will = session.will;
    if (will !== undefined) {
      const at = since + will.delay * 1000;
      if (at <= now) this.publishWill(session);
      else {
        session.willTimer ??= new SessionTimer(this, session, SessionEnd.Will);
        wheel.schedule(session.willTimer, at);
      }
    }
  }

  /** @internal A disconnected session's timer is due (SessionTimer). */
  timerDue(session: Session, end: SessionEnd): void {
    if (end === SessionEnd.Expiry) this.expire(session);
    else this.publishWill(session);
  }

  private expire(session: Session): void {
    if (this.endSession(session)) this.ctx.stats.sessionsExpired++;
  }

  /**
   * Ends a disconnected session now, as its expiry would: a will still waiting for its delay goes
   * out [MQTT-3.1.3-9]. Also the management API's kick of a disconnected client (EMQX discards
   * such a session). Returns whether it ended one.
   */
  private endSession(session: Session): boolean {
    if (session.owner !== null || this.map.get(session.clientId) !== session) return false;
    if (session.will !== undefined) this.publishWill(session);
    this.discard(session);
    return true;
  }

  /**
   * The management API's kick, on the node that holds the session: a live connection ends
   * server-side (5.0 DISCONNECT 0x98, the will is published [MQTT-3.1.2-8]); a disconnected
   * session is discarded with its pending will, as EMQX 4.4 does. False when there is none here.
   */
  kick(clientId: string): boolean {
    const session = this.map.get(clientId);
    if (session === undefined) return false;
    const owner = session.owner;
    if (owner !== null) (owner as ClientConnection).disconnect(ReasonCode.AdministrativeAction, true);
    else this.endSession(session);
    return true;
  }

  private publishWill(session: Session): void {
    const will = session.will;
    if (will === undefined) return;
    const { acl, stats } = this.ctx;
    session.will = undefined;
    if (session.willTimer !== null) this.ctx.wheel.cancel(session.willTimer);
    if (session.journal !== null) session.journal.save(session);
    // Checked at CONNECT too; again here, for a session restored or moved with its will.
    if (!acl.check('publish', session.clientId, session.username, will.topic)) {
      stats.publishDenied++;
      return;
    }
    let properties: Properties | undefined;
    let expiresAt = 0;
    if (will.properties !== undefined) {
      const { willDelayInterval: _delay, ...rest } = will.properties;
      properties = rest;
      if (rest.messageExpiryInterval !== undefined) expiresAt = Date.now() + rest.messageExpiryInterval * 1000;
    }
    stats.willsPublished++;
    this.ctx.router.publish(new Message(will.topic, will.payload, will.qos, will.retain, properties, expiresAt, session.clientId, true));
  }

  /** Removes a session and all its subscriptions. */
  private discard(session: Session): void {
    this.cancelTimers(session);
    this.ctx.router.unsubscribeAll(session);
    if (this.map.get(session.clientId) === session) {
      this.map.delete(session.clientId);
      if (this.ctx.cluster !== null) this.ctx.cluster.sessionDiscarded(session.clientId);
    }
    if (session.journal !== null) {
      session.journal.delete(session);
      session.journal = null;
    }
  }

  private cancelTimers(session: Session): void {
    if (session.expiryTimer !== null) this.ctx.wheel.cancel(session.expiryTimer);
    if (session.willTimer !== null) this.ctx.wheel.cancel(session.willTimer);
  }
}
