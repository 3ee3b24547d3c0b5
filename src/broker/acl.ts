// Topic ACLs (SPEC 13): one rule a line, `verdict who access filter`, first match wins, whole-line
// `#` comments (a `#` later in a line is the topic wildcard). Rules are compiled once into
// per-action lists; check() walks one list, and only rules with %c/%u build a string.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/schema.js';
import type { Config } from '../config/schema.js';
import { filterCovers, parseSharedFilter, topicFilterError, topicMatches } from '../mqtt/topic.js';

export type AclAction = 'publish' | 'subscribe';

export interface Acl {
  check(action: AclAction, clientId: string, username: string | undefined, topic: string): boolean;
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

const ALLOW_ALL: Acl = { check: () => true };
const PLACEHOLDER = /%[cu]/g;
const COMMENT_OR_BLANK = /^\s*(?:#.*)?$/;

function compile(text: string, file: string, aclDefault: boolean): Acl {
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

  return {
    check(action, clientId, username, topic) {
      const rules = action === 'publish' ? publish : subscribe;
      let requested = topic;
      if (action === 'subscribe') {
        // A shared subscription is granted on the filter it subscribes to. [MQTT-4.8.2-1]
        const shared = parseSharedFilter(topic);
        if (typeof shared === 'object') requested = shared.filter;
      }
      for (let i = 0; i < rules.length; i++) {
        const rule = rules[i] as Rule;
        if (rule.who === 'user' ? rule.name !== username : rule.who === 'client' && rule.name !== clientId) continue;
        const filter = filterFor(rule, clientId, username);
        if (filter === undefined) continue;
        const applies = action === 'publish' ? topicMatches(filter, requested) : filter === requested || filterCovers(filter, requested);
        if (applies) return rule.allow;
      }
      return aclDefault;
    },
  };
}

/** The ACL of auth.acl_file (read once), or an allow-all ACL when none is set. */
export function loadAcl(auth: Config['auth']): Acl {
  if (auth.acl_file === '') return ALLOW_ALL;
  let text: string;
  try {
    text = readFileSync(auth.acl_file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read auth.acl_file ${auth.acl_file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return compile(text, auth.acl_file, auth.acl_default === 'allow');
}
