// The port through which the broker tells the cluster what it needs to know, without importing
// cluster code (dependencies point admin -> cluster -> broker). The cluster sets it on the Broker;
// without a cluster it stays null and the broker pays one null check.
import type { Message } from './message.js';
import type { Session } from './session.js';

export interface ClusterBridge {
  /** A filter got its first local subscription (`group` '' for a plain one, else the shared group). */
  routeAdded(filter: string, group: string): void;
  /** The filter's last local subscription (of that group) went. */
  routeRemoved(filter: string, group: string): void;
  /**
   * The remote part of a local publish's plan, decided before anything is delivered: gives the
   * message its cluster-wide identity, the nodes with a matching route and, of each matching
   * shared group, the one node that gets it (this one, or another: then its id goes to
   * `plan.elsewhere`). One node per group cluster-wide.
   */
  planRemote(message: Message, plan: RemotePlan): void;
  /** After local delivery: one forward to each node of the plan. Returns how many. */
  forward(message: Message, plan: RemotePlan): number;
  /** A retained message was set, or cleared (empty payload), on this node: replicate it. */
  retained(message: Message): void;
  /** A session was opened here (registry: the client id now lives on this node). */
  sessionOpened(session: Session): void;
  /** A session ended here for good. */
  sessionDiscarded(clientId: string): void;
  /**
   * Connect path, right after sessionOpened: when the peers have yet to be sent the session's
   * claim, holds the connection's output (its CONNACK first) until they have been. A client that
   * reads its CONNACK and at once connects to another node then finds its session known there.
   */
  holdConnack(clientId: string, output: HeldOutput): void;
  /**
   * Connect path, before the session opens: when another node holds this client id, takes its
   * session (or just ends it, for a clean start) and resolves once it is installed locally.
   * Null when no other node holds it.
   */
  pullSession(clientId: string, cleanStart: boolean): Promise<void> | null;
}

/** A connection's output, which the cluster can hold back for a while (holdConnack). */
export interface HeldOutput {
  /** Keeps what is written from here on, in order, until release(). */
  hold(): void;
  /** Sends what was kept, and writes go straight out again. */
  release(): void;
}

/** Where one publish goes beyond this node; part of the router's reusable plan, emptied after each publish. */
export interface RemotePlan {
  /** Node -> the shared groups picked for it ([] when only plain routes match there). */
  readonly nodes: Map<string, string[]>;
  /** Route ids of local shared groups picked on another node: local members do not get it. */
  readonly elsewhere: string[];
}

/** A message's cluster-wide identity, set by planRemote or carried by a forward; undefined
 *  for one published before the node was part of a cluster. */
export function messageKey(message: { readonly origin?: string | undefined; readonly originSeq?: number | undefined }): string | undefined {
  return message.origin === undefined ? undefined : `${message.origin}\0${message.originSeq ?? 0}`;
}

/** One string per route (`group` '' for a plain filter); neither part can hold NUL (MQTT strings exclude it). */
export function routeId(filter: string, group: string): string {
  return `${group}\0${filter}`;
}
