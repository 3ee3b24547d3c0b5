// Retained messages by topic. A new subscription's filter walks the topic tree, so a subscribe
// costs the size of the matched branches, not the number of retained topics.

interface Retained<M> {
  readonly topic: string;
  message: M;
}

class TopicNode<M> {
  children: Map<string, TopicNode<M>> | undefined = undefined;
  retained: Retained<M> | undefined = undefined;

  constructor(
    readonly parent: TopicNode<M> | undefined,
    readonly level: string,
  ) {}
}

type Visit<C, M> = (ctx: C, topic: string, message: M) => void;

export class RetainedTree<M> {
  private readonly root = new TopicNode<M>(undefined, '');
  /** Topic -> entry, so get and the common update of an existing topic skip the tree walk. */
  private readonly byTopic = new Map<string, Retained<M>>();

  get size(): number {
    return this.byTopic.size;
  }

  /** Every retained message ('$' topics too), e.g. to replicate them to a joining node. */
  *messages(): IterableIterator<M> {
    for (const entry of this.byTopic.values()) yield entry.message;
  }

  set(topic: string, message: M): void {
    const existing = this.byTopic.get(topic);
    if (existing !== undefined) {
      existing.message = message;
      return;
    }
    let node = this.root;
    for (const level of topic.split('/')) {
      node.children ??= new Map();
      let next = node.children.get(level);
      if (next === undefined) {
        next = new TopicNode(node, level);
        node.children.set(level, next);
      }
      node = next;
    }
    const retained: Retained<M> = { topic, message };
    node.retained = retained;
    this.byTopic.set(topic, retained);
  }

  delete(topic: string): boolean {
    if (!this.byTopic.delete(topic)) return false;
    let node = this.root;
    for (const level of topic.split('/')) node = node.children?.get(level) as TopicNode<M>; // present: indexed above
    node.retained = undefined;
    // Unlink nodes left with nothing, up to the root.
    while (node.parent !== undefined && node.retained === undefined && node.children === undefined) {
      const parent: TopicNode<M> = node.parent;
      const siblings = parent.children as Map<string, TopicNode<M>>;
      siblings.delete(node.level);
      if (siblings.size === 0) parent.children = undefined;
      node = parent;
    }
    return true;
  }

  get(topic: string): M | undefined {
    return this.byTopic.get(topic)?.message;
  }

  /** visit(ctx, topic, message) for every stored topic matched by `filter` (a valid non-shared filter). */
  match<C>(filter: string, ctx: C, visit: Visit<C, M>): void {
    matchLevel(this.root, filter.split('/'), 0, ctx, visit);
  }

  *entries(): IterableIterator<[string, M]> {
    for (const [topic, retained] of this.byTopic) yield [topic, retained.message];
  }
}

function matchLevel<C, M>(node: TopicNode<M>, levels: string[], i: number, ctx: C, visit: Visit<C, M>): void {
  const level = levels[i];
  if (level === undefined) {
    if (node.retained !== undefined) visit(ctx, node.retained.topic, node.retained.message);
    return;
  }
  if (level === '#') {
    // '#' matches this node (the parent level: "a/#" matches "a") and everything below it.
    if (node.retained !== undefined) visit(ctx, node.retained.topic, node.retained.message);
    if (node.children === undefined) return;
    for (const child of node.children.values()) {
      if (i === 0 && isDollar(child.level)) continue; // [MQTT-4.7.2-1]
      visitSubtree(child, ctx, visit);
    }
    return;
  }
  if (node.children === undefined) return;
  if (level === '+') {
    for (const child of node.children.values()) {
      if (i === 0 && isDollar(child.level)) continue; // [MQTT-4.7.2-1]
      matchLevel(child, levels, i + 1, ctx, visit);
    }
    return;
  }
  const child = node.children.get(level);
  if (child !== undefined) matchLevel(child, levels, i + 1, ctx, visit);
}

function visitSubtree<C, M>(node: TopicNode<M>, ctx: C, visit: Visit<C, M>): void {
  if (node.retained !== undefined) visit(ctx, node.retained.topic, node.retained.message);
  if (node.children === undefined) return;
  for (const child of node.children.values()) visitSubtree(child, ctx, visit);
}

function isDollar(level: string): boolean {
  return level.charCodeAt(0) === 0x24;
}
