// The replicated route table (seed distributed-cluster): topic filter -> the other nodes with a
// local subscriber on it, held in a trie like the local subscriptions. Shared subscription groups
// are routes of their own, so that one member is picked cluster-wide.
import { routeId } from '../broker/cluster-bridge.js';
import { SubscriptionTrie } from '../broker/subscription-trie.js';

/** The nodes that have members of one shared group on one filter. */
export interface GroupRoute {
  readonly filter: string;
  readonly group: string;
  readonly nodes: string[];
  /** Round-robin position over the candidates. */
  next: number;
}

/** A route as it travels: [filter, group], group '' for a plain filter. */
export type RouteKey = [filter: string, group: string];

export class RouteTable {
  /** filter -> nodes (key and value are the node name). */
  readonly filters = new SubscriptionTrie<string>();
  /** filter -> shared groups on it (keyed by group name). */
  readonly groups = new SubscriptionTrie<GroupRoute>();
  /** Each node's routes, to purge them when it goes down. */
  private readonly byNode = new Map<string, Set<string>>();

  add(node: string, filter: string, group: string): void {
    let own = this.byNode.get(node);
    if (own === undefined) this.byNode.set(node, (own = new Set()));
    const id = routeId(filter, group);
    if (own.has(id)) return;
    own.add(id);
    if (group === '') {
      this.filters.add(filter, node, node);
      return;
    }
    let route = this.groups.get(filter, group);
    if (route === undefined) {
      route = { filter, group, nodes: [], next: 0 };
      this.groups.add(filter, group, route);
    }
    route.nodes.push(node);
  }

  remove(node: string, filter: string, group: string): void {
    const own = this.byNode.get(node);
    if (own === undefined || !own.delete(routeId(filter, group))) return;
    if (group === '') {
      this.filters.remove(filter, node);
      return;
    }
    const route = this.groups.get(filter, group);
    if (route === undefined) return;
    const i = route.nodes.indexOf(node);
    if (i >= 0) route.nodes.splice(i, 1);
    if (route.nodes.length === 0) this.groups.remove(filter, group);
  }

  /** Replaces everything a node routes (a full sync from it). */
  replace(node: string, routes: readonly RouteKey[]): void {
    this.purge(node);
    for (const [filter, group] of routes) this.add(node, filter, group);
  }

  /** Drops a node's routes (it went down or left). Returns how many there were. */
  purge(node: string): number {
    const own = this.byNode.get(node);
    if (own === undefined) return 0;
    const ids = [...own];
    for (const id of ids) {
      const [filter, group] = parseRouteId(id);
      this.remove(node, filter, group);
    }
    this.byNode.delete(node);
    return ids.length;
  }

  /** A node's routes, for status and tests. */
  routesOf(node: string): RouteKey[] {
    return [...(this.byNode.get(node) ?? [])].map(parseRouteId);
  }

  /** Nodes with at least one route. */
  nodes(): string[] {
    return [...this.byNode.keys()].filter((n) => (this.byNode.get(n)?.size ?? 0) > 0);
  }
}

export function parseRouteId(id: string): RouteKey {
  const i = id.indexOf('\0');
  return [id.slice(i + 1), id.slice(0, i)];
}
