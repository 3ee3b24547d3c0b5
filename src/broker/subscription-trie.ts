// Local subscriptions as a trie over topic levels. Publishing walks only the branches a topic can
// match ('+', '#' and the exact level at each depth) instead of testing every filter.

/**
 * The entries of one filter: keys and values in parallel arrays, so a publish iterates them with
 * an index and allocates nothing (a Map's for-of allocates an entry per element), plus key -> index
 * for O(1) get, replace and swap-remove.
 */
class Entries<V> {
  readonly keys: string[] = [];
  readonly values: V[] = [];
  private readonly index = new Map<string, number>();

  get size(): number {
    return this.keys.length;
  }

  get(key: string): V | undefined {
    const i = this.index.get(key);
    return i === undefined ? undefined : this.values[i];
  }

  /** Returns true when the key is new. */
  set(key: string, value: V): boolean {
    const i = this.index.get(key);
    if (i !== undefined) {
      this.values[i] = value;
      return false;
    }
    this.index.set(key, this.keys.length);
    this.keys.push(key);
    this.values.push(value);
    return true;
  }

  delete(key: string): boolean {
    const i = this.index.get(key);
    if (i === undefined) return false;
    const last = this.keys.length - 1;
    if (i !== last) {
      const moved = this.keys[last] as string;
      this.keys[i] = moved;
      this.values[i] = this.values[last] as V;
      this.index.set(moved, i);
    }
    this.keys.pop();
    this.values.pop();
    this.index.delete(key);
    return true;
  }
}

class TrieNode<V> {
  /** Exact-level children; created on first use so leaves stay small. */
  children: Map<string, TrieNode<V>> | undefined = undefined;
  plus: TrieNode<V> | undefined = undefined;
  hash: TrieNode<V> | undefined = undefined;
  /** Subscribers of the filter ending at this node, by key (e.g. client id). */
  entries: Entries<V> | undefined = undefined;

  constructor(
    readonly parent: TrieNode<V> | undefined,
    readonly level: string,
  ) {}

  isEmpty(): boolean {
    return this.entries === undefined && this.children === undefined && this.plus === undefined && this.hash === undefined;
  }
}

export class SubscriptionTrie<V> {
  private readonly root = new TrieNode<V>(undefined, '');
  private entryCount = 0;
  private filters = 0;

  /** Number of (filter, key) entries. */
  get size(): number {
    return this.entryCount;
  }

  /** Number of distinct filters with at least one entry. */
  get filterCount(): number {
    return this.filters;
  }

  /**
   * Adds or replaces the value for (filter, key). Returns true when the filter had no entry before
   * (the cluster adds a route then). `filter` is a valid non-shared filter.
   */
  add(filter: string, key: string, value: V): boolean {
    let node = this.root;
    for (const level of filter.split('/')) {
      let next: TrieNode<V> | undefined;
      if (level === '+') next = node.plus ??= new TrieNode(node, level);
      else if (level === '#') next = node.hash ??= new TrieNode(node, level);
      else {
        node.children ??= new Map();
        next = node.children.get(level);
        if (next === undefined) {
          next = new TrieNode(node, level);
          node.children.set(level, next);
        }
      }
      node = next;
    }
    const entries = (node.entries ??= new Entries());
    const firstForFilter = entries.size === 0;
    if (entries.set(key, value)) this.entryCount++;
    if (firstForFilter) this.filters++;
    return firstForFilter;
  }

  /**
   * Removes (filter, key). Returns true when this removed the filter's last entry (the cluster
   * deletes the route then); false when entries remain or (filter, key) was not there.
   */
  remove(filter: string, key: string): boolean {
    const node = this.find(filter);
    if (node?.entries === undefined || !node.entries.delete(key)) return false;
    this.entryCount--;
    if (node.entries.size > 0) return false;
    node.entries = undefined;
    this.filters--;
    this.prune(node);
    return true;
  }

  get(filter: string, key: string): V | undefined {
    return this.find(filter)?.entries?.get(key);
  }

  /**
   * Calls visit(ctx, value, key) for every entry whose filter matches `topic` (a valid topic name).
   * `ctx` lets callers pass a module-level function: no closure per publish. visit may remove the
   * entry it is given (e.g. a subscriber dropped on overflow); other changes to the trie during
   * match may skip or repeat entries.
   */
  match<C>(topic: string, ctx: C, visit: (ctx: C, value: V, key: string) => void): void {
    const levels = topic.split('/');
    // [MQTT-4.7.2-1] wildcards at the first level do not match topics starting with '$'.
    const root = this.root;
    if (topic.charCodeAt(0) === 0x24) {
      const child = root.children?.get(levels[0] as string);
      if (child !== undefined) this.walk(child, levels, 1, ctx, visit);
    } else {
      this.walk(root, levels, 0, ctx, visit);
    }
  }

  private walk<C>(node: TrieNode<V>, levels: string[], i: number, ctx: C, visit: (ctx: C, value: V, key: string) => void): void {
    // '#' matches the remaining levels, and also the parent level itself ("a/#" matches "a").
    if (node.hash?.entries !== undefined) visitAll(node.hash.entries, ctx, visit);
    const level = levels[i];
    if (level === undefined) {
      if (node.entries !== undefined) visitAll(node.entries, ctx, visit);
      return;
    }
    if (node.plus !== undefined) this.walk(node.plus, levels, i + 1, ctx, visit);
    const child = node.children?.get(level);
    if (child !== undefined) this.walk(child, levels, i + 1, ctx, visit);
  }

  private find(filter: string): TrieNode<V> | undefined {
    let node: TrieNode<V> | undefined = this.root;
    for (const level of filter.split('/')) {
      if (level === '+') node = node.plus;
      else if (level === '#') node = node.hash;
      else node = node.children?.get(level);
      if (node === undefined) return undefined;
    }
    return node;
  }

  /** Unlinks `node` and then each ancestor that is left with nothing, up to the root. */
  private prune(node: TrieNode<V>): void {
    let n: TrieNode<V> = node;
    while (n.parent !== undefined && n.isEmpty()) {
      const parent: TrieNode<V> = n.parent;
      if (n === parent.plus) parent.plus = undefined;
      else if (n === parent.hash) parent.hash = undefined;
      else if (parent.children !== undefined) {
        parent.children.delete(n.level);
        if (parent.children.size === 0) parent.children = undefined;
      }
      n = parent;
    }
  }
}

function visitAll<V, C>(entries: Entries<V>, ctx: C, visit: (ctx: C, value: V, key: string) => void): void {
  // Backwards, so removing the current entry (swap-remove from the end) skips nothing.
  const { keys, values } = entries;
  for (let i = keys.length - 1; i >= 0; i--) {
    if (i >= keys.length) continue; // visit removed several entries
    visit(ctx, values[i] as V, keys[i] as string);
  }
}
