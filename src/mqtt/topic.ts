// Topic names and filters (MQTT 5.0 section 4.7, shared subscriptions 4.8.2). Pure string work;
// UTF-8 well-formedness and U+0000 are checked by the decoder before a string gets here.

/** Why a topic name is invalid, or undefined when it is valid. */
export function topicNameError(topic: string, maxLevels: number): string | undefined {
  if (topic.length === 0) return 'empty topic name'; // [MQTT-4.7.3-1]
  let levels = 1;
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x2b || c === 0x23) return 'wildcard in topic name'; // [MQTT-3.3.2-2]
    if (c === 0x2f && ++levels > maxLevels) return `more than ${maxLevels} topic levels`;
  }
  // A topic name cannot address a shared subscription (MQTT 5.0 4.8.2; Mosquitto refuses it too).
  if (topic.startsWith('$share/')) return "topic name starts with '$share/'";
  return undefined;
}

/** Why a topic filter (without any `$share/group/` prefix) is invalid, or undefined. */
export function topicFilterError(filter: string, maxLevels: number): string | undefined {
  if (filter.length === 0) return 'empty topic filter'; // [MQTT-4.7.3-1]
  let levels = 1;
  let levelStart = 0;
  for (let i = 0; i < filter.length; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x2f) {
      if (++levels > maxLevels) return `more than ${maxLevels} topic levels`;
      levelStart = i + 1;
    } else if (c === 0x2b) {
      // [MQTT-4.7.1-2] '+' occupies an entire level.
      const next = filter.charCodeAt(i + 1);
      if (i !== levelStart || (i + 1 < filter.length && next !== 0x2f)) return "'+' must fill a whole level";
    } else if (c === 0x23) {
      // [MQTT-4.7.1-1] '#' is the last character and fills its level.
      if (i !== levelStart || i !== filter.length - 1) return "'#' must be the last level";
    }
  }
  return undefined;
}

export interface SharedFilter {
  group: string;
  filter: string;
}

/**
 * Splits `$share/group/filter`. Returns undefined for a non-shared filter and a string reason for
 * a malformed shared one ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
 */
export function parseSharedFilter(filter: string): SharedFilter | string | undefined {
  if (!filter.startsWith('$share/')) return undefined;
  const slash = filter.indexOf('/', 7);
  if (slash < 0) return 'shared subscription without a topic filter';
  const group = filter.slice(7, slash);
  if (group.length === 0 || group.includes('+') || group.includes('#')) return 'invalid share name';
  const rest = filter.slice(slash + 1);
  if (rest.length === 0) return 'shared subscription without a topic filter';
  return { group, filter: rest };
}

/**
 * Whether `topic` (a valid topic name) matches `filter` (a valid non-shared filter). For ACLs
 * and tests; routing walks the subscription trie instead.
 */
export function topicMatches(filter: string, topic: string): boolean {
  // [MQTT-4.7.2-1] '#' or '+' at the first level does not match a topic starting with '$'.
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const fl = f[i];
    if (fl === '#') return true; // matches the parent level too: "a/#" matches "a"
    const tl = t[i];
    if (tl === undefined) return false;
    if (fl !== '+' && fl !== tl) return false;
  }
  return f.length === t.length;
}

/**
 * Whether every topic matched by `inner` is also matched by `outer` (both valid non-shared
 * filters). Used to grant a subscription under an ACL rule's filter.
 */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split('/');
  const n = inner.split('/');
  for (let i = 0; i < o.length; i++) {
    const ol = o[i];
    if (ol === '#') return !(i === 0 && n[0]?.startsWith('$'));
    const nl = n[i];
    if (nl === undefined) return false;
    if (ol === '+') {
      if (nl === '#' || (i === 0 && nl.startsWith('$'))) return false;
      continue;
    }
    if (ol !== nl) return false;
  }
  return o.length === n.length;
}

/**
 * Whether some topic name matches both filters (valid, non-shared). The ACL uses it to find the
 * subscriptions a deny rule can reach, whichever of the two is wider.
 */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  // [MQTT-4.7.2-1] a leading wildcard matches no '$' topic.
  const wild0 = (l: string | undefined): boolean => l === '#' || l === '+';
  if ((wild0(x[0]) && y[0]?.startsWith('$') === true) || (wild0(y[0]) && x[0]?.startsWith('$') === true)) return false;
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const xl = x[i] as string;
    const yl = y[i] as string;
    if (xl === '#' || yl === '#') return true;
    if (xl !== '+' && yl !== '+' && xl !== yl) return false;
  }
  // One is longer: the other's topics end here, matched by the longer one only through 'a/#' -> 'a'.
  const rest = x.length > n ? x : y;
  return rest.length === n || (rest.length === n + 1 && rest[n] === '#');
}
