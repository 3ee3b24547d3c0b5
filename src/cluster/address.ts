// Where a node's cluster port is: `name@host` means the conventional port 4370 + the name's
// numeric suffix (SPEC 1); `name@host:port` names another port (several nodes on one host with
// ports chosen at start, as the tests do).
import { defaultClusterPort } from '../config/schema.js';

export interface NodeAddress {
  /** The node name, `name@host`, without any port. */
  readonly name: string;
  readonly host: string;
  readonly port: number;
}

export function parseNodeAddress(text: string): NodeAddress {
  const at = text.indexOf('@');
  if (at <= 0 || at === text.length - 1) throw new Error(`invalid node: ${text} (expected name@host or name@host:port)`);
  const base = text.slice(0, at);
  const rest = text.slice(at + 1);
  let host = rest;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
  const withPort = /^([^:]+):(\d+)$/.exec(rest);
  if (bracketed !== null) {
    host = bracketed[1] as string;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if (withPort !== null) {
    host = withPort[1] as string;
    port = Number(withPort[2]);
  }
  const name = `${base}@${bracketed !== null && port !== undefined ? `[${host}]` : host}`;
  port ??= defaultClusterPort(name);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid node: ${text} (port out of range)`);
  return { name, host, port };
}
