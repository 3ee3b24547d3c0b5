import type { Broker } from '../broker/broker.js';
import type { Cluster } from '../cluster/cluster.js';
import type { NodeControl } from '../cluster/node-control.js';
import type { NodeRebalance } from '../rebalance/service.js';

/** What the route handlers read and act on. */
export interface AdminContext {
  readonly broker: Broker;
  /** The node's cluster membership (the cluster routes); absent in tests of a bare broker. */
  readonly cluster?: Cluster;
  readonly nodeName: string;
  readonly version: string;
  /** ms since the epoch when the node started. */
  readonly startedAt: number;
  /**
   * Whether the node reports itself available to load balancers (the availability check): the
   * single switch the eviction agent turns off while evacuating or donating in a rebalance.
   */
  readonly availability: { readonly serving: boolean };
  /** Evacuation and the eviction agent (the /load_rebalance endpoints); absent in API-only tests. */
  readonly rebalance?: NodeRebalance;
  /** Remote stop and the upgrade lease (the /nodes/:node endpoints); absent in API-only tests. */
  readonly nodeControl?: NodeControl;
}
