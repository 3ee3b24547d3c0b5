// Topic ACLs (SPEC 13): one rule a line, `verdict who access filter`, first match wins, whole-line
// `#` comments (a `#` later in a line is the topic wildcard). Rules are compiled once into
// per-action lists; check() walks one list, and only rules with %c/%u build a string.
// Read access (SPEC 14) is the subscribe rules applied to each delivered topic: a subscription
// granted on a wide filter (`#`) must not carry topics a deny rule covers (`secret/#`). Only the
// subscriptions whose filter overlaps a deny rule pay that check, through a bounded cache.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/schema.js';
import type { Config } from '../config/schema.js';
import { filterCovers, filtersOverlap, parseSharedFilter, topicFilterError, topicMatches } from '../mqtt/topic.js';

export type AclAction = 'publish' | 'subscribe';

export interface Acl {
  /** publish: a topic name (`$SYS/...` refused unless auth.allow_sys_publish); subscribe: a filter, `$share/g/f` checked on f. */
  check(action: AclAction, clientId: string, username: string | undefined, topic: string): boolean;
  /** Whether a granted subscription on `filter` (non-shared) can match a topic this client may not read: its deliveries then go through mayRead(). */
  readLimited(clientId: string, username: string | undefined, filter: string): boolean;
  /** Whether this client may receive a message on `topic` (cached, auth.acl_cache_size entries). */
  mayRead(clientId: string, username: string | undefined, topic: string): boolean;
  /** Entries in the read cache (metrics). */
  readonly cacheSize: number;
}

interface Rule {
  allow: boolean;
  who: 'all' | 'user' | 'client';
  /** The user name or client id the rule is for. */
  name: string;
  filter: string;
  /** For a filter with placeholders: the literal pieces around them (pieces.length = vars.length + 1). */
  pieces: string[] | undefined;
  vars: Array<'%c' | '%u'>;
}

const PLACEHOLDER = /%[cu]/g;
const COMMENT_OR_BLANK = /^\s*(?:#.*)?$/;

/** `$SYS` and `$SYS/...` are the broker's own topics [MQTT-4.7.2-1]; clients publish there only when allowed. */
function isSysTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24 && (topic === '$SYS' || topic.startsWith('$SYS/'));
}

/** No ACL file: every topic may be read and subscribed, and published except `$SYS/...` unless allowed. */
function allowAll(allowSysPublish: boolean): Acl {
  return {
    check: (action, _c, _u, topic) => action === 'subscribe' || allowSysPublish || !isSysTopic(topic),
    readLimited: () => false,
    mayRead: () => true,
    cacheSize: 0,
  };
}

function compile(text: string, file: string, auth: Config['auth']): Acl {
  const aclDefault = auth.acl_default === 'allow';
  const publish: Rule[] = [];
  const subscribe: Rule[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (COMMENT_OR_BLANK.test(line)) continue;
    const bad = (what: string): never => {
      throw new ConfigError(`${file}:${i + 1}: ${what} (expected: allow|deny all|user:NAME|client:ID publish|subscribe|all FILTER)`);
    };
    const fields = line.trim().split(/\s+/);
    if (fields.length !== 4) bad(`expected 4 fields, got ${fields.length}`);
    const [verdict = '', whoField = '', access = '', filter = ''] = fields;
    if (verdict !== 'allow' && verdict !== 'deny') bad(`bad verdict ${JSON.stringify(verdict)}`);
    const colon = whoField.indexOf(':');
    const who = colon < 0 ? whoField : whoField.slice(0, colon);
    const name = colon < 0 ? '' : whoField.slice(colon + 1);
    if (who !== 'all' && who !== 'user' && who !== 'client') return bad(`bad subject ${JSON.stringify(whoField)}`);
    if ((who === 'all') !== (colon < 0) || (colon >= 0 && name === '')) bad(`bad subject ${JSON.stringify(whoField)}`);
    if (access !== 'publish' && access !== 'subscribe' && access !== 'all') bad(`bad access ${JSON.stringify(access)}`);
    // Placeholders stand for one literal piece of text; check the filter's shape with one in place.
    const filterError = topicFilterError(filter.replace(PLACEHOLDER, 'x'), 65535);
    if (filterError !== undefined) bad(`bad topic filter ${JSON.stringify(filter)}: ${filterError}`);
    const vars = (filter.match(PLACEHOLDER) ?? []) as Array<'%c' | '%u'>;
    const rule: Rule = { allow: verdict === 'allow', who, name, filter, pieces: vars.length > 0 ? filter.split(PLACEHOLDER) : undefined, vars };
    if (access !== 'subscribe') publish.push(rule);
    if (access !== 'publish') subscribe.push(rule);
  }

  /**
   * The rule's filter for this client, or undefined when the rule cannot apply: a placeholder
   * with no value (%u without a user name) or one holding a wildcard. Substituted text is
   * literal, and a literal '+' or '#' can neither occur in a topic name nor cover a wildcard of
   * a requested filter, so such a client id or user name must not widen the rule.
   */
  const filterFor = (rule: Rule, clientId: string, username: string | undefined): string | undefined => {
    const pieces = rule.pieces;
    if (!pieces) return rule.filter;
    let out = pieces[0] ?? '';
    for (let v = 0; v < rule.vars.length; v++) {
      const value = rule.vars[v] === '%c' ? clientId : username;
      if (value === undefined || value.includes('+') || value.includes('#')) return undefined;
      out += value + (pieces[v + 1] ?? '');
    }
    return out;
  };

  const forClient = (rule: Rule, clientId: string, username: string | undefined): boolean =>
    rule.who === 'user' ? rule.name === username : rule.who !== 'client' || rule.name === clientId;

  /** The first applicable rule's verdict for a topic name (`byName`) or a requested filter it covers. */
  const decide = (rules: Rule[], clientId: string, username: string | undefined, topic: string, byName: boolean): boolean => {
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i] as Rule;
      if (!forClient(rule, clientId, username)) continue;
      const filter = filterFor(rule, clientId, username);
      if (filter === undefined) continue;
      if (byName ? topicMatches(filter, topic) : filter === topic || filterCovers(filter, topic)) return rule.allow;
    }
    return aclDefault;
  };

  // Client id, user name and topic hold no U+0000, so the key is unambiguous; an absent user name
  // leaves out its field, so it differs from an empty one. When no subscribe rule names a client
  // or user, the verdict depends on the topic alone: the topic is the key, one entry serves every
  // subscriber, and a fan-out builds no string per delivery.
  const cache = new Map<string, boolean>();
  const cacheMax = auth.acl_cache_size;
  const byTopic = subscribe.every((rule) => rule.who === 'all' && rule.pieces === undefined);

  const check = (action: AclAction, clientId: string, username: string | undefined, topic: string): boolean => {
    if (action === 'publish' && !auth.allow_sys_publish && isSysTopic(topic)) return false;
    if (action === 'publish') return decide(publish, clientId, username, topic, true);
    // A shared subscription is granted on the filter it subscribes to. [MQTT-4.8.2-1]
    const shared = parseSharedFilter(topic);
    return decide(subscribe, clientId, username, typeof shared === 'object' ? shared.filter : topic, false);
  };

  return {
    check,
    get cacheSize() {
      return cache.size;
    },
    readLimited(clientId, username, filter) {
      // Not granted as a whole to this identity (a session resumed under another user name).
      if (!check('subscribe', clientId, username, filter)) return true;
      for (let i = 0; i < subscribe.length; i++) {
        const rule = subscribe[i] as Rule;
        if (rule.allow || !forClient(rule, clientId, username)) continue;
        const ruleFilter = filterFor(rule, clientId, username);
        if (ruleFilter !== undefined && filtersOverlap(ruleFilter, filter)) return true;
      }
      return false;
    },
    mayRead(clientId, username, topic) {
      const key = byTopic ? topic : username === undefined ? `${clientId}\0${topic}` : `${clientId}\0${username}\0${topic}`;
      let verdict = cache.get(key);
      if (verdict === undefined) {
        verdict = decide(subscribe, clientId, username, topic, true);
        if (cacheMax > 0) {
          // Oldest entry out first: a fixed bound, and no reordering on the hit path.
          if (cache.size >= cacheMax) cache.delete(cache.keys().next().value as string);
          cache.set(key, verdict);
        }
      }
      return verdict;
    },
  };
}

/** The ACL of auth.acl_file (read once), or an allow-all ACL (but `$SYS` publishing) when none is set. */
export function loadAcl(auth: Config['auth']): Acl {
  if (auth.acl_file === '') return allowAll(auth.allow_sys_publish);
  let text: string;
  try {
    text = readFileSync(auth.acl_file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read auth.acl_file ${auth.acl_file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return compile(text, auth.acl_file, auth);
}
