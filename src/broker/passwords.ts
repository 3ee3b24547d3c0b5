// The password file: one `user:scrypt$N$r$p$<salt b64>$<hash b64>` line per user, `#` comments.
// The scrypt cost parameters are stored with each hash, so they can be raised later without
// invalidating existing entries. Used by the broker's authenticator and by `tidemq passwd`.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../config/schema.js';

export interface PasswordHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** Parameters for new hashes (node's defaults; about 50 ms and 16 MiB per verification). */
export const SCRYPT_PARAMS = { N: 16384, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

function derive(password: Buffer, h: Omit<PasswordHash, 'hash'>, keylen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // scrypt needs about 128*N*r bytes; allow stored parameters above node's 32 MiB default.
    const maxmem = 256 * h.N * h.r + 32 * 1024 * 1024;
    scrypt(password, h.salt, keylen, { N: h.N, r: h.r, p: h.p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** A new salted hash of `password` in the file's encoding. */
export async function hashPassword(password: Buffer): Promise<string> {
  const params = { ...SCRYPT_PARAMS, salt: randomBytes(SALT_BYTES) };
  const hash = await derive(password, params, HASH_BYTES);
  return `scrypt$${params.N}$${params.r}$${params.p}$${params.salt.toString('base64')}$${hash.toString('base64')}`;
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

function param(s: string | undefined, min: number, max: number): number | undefined {
  const n = s !== undefined && /^\d+$/.test(s) ? Number(s) : Number.NaN;
  return n >= min && n <= max ? n : undefined;
}

/** Decodes `scrypt$N$r$p$salt$hash`, or undefined when it is not that form (or its cost is unreasonable). */
export function parseHash(encoded: string): PasswordHash | undefined {
  const [scheme, n, r, p, salt, hash, ...rest] = encoded.split('$');
  if (scheme !== 'scrypt' || rest.length > 0 || !salt || !hash || !B64.test(salt) || !B64.test(hash)) return undefined;
  const N = param(n, 2, 2 ** 20);
  const R = param(r, 1, 32);
  const P = param(p, 1, 16);
  // N must be a power of two for scrypt.
  if (N === undefined || R === undefined || P === undefined || (N & (N - 1)) !== 0) return undefined;
  return { N, r: R, p: P, salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') };
}

/** Whether `password` matches; runs scrypt on the libuv threadpool. */
export async function verifyPassword(h: PasswordHash, password: Buffer): Promise<boolean> {
  const key = await derive(password, h, h.hash.length);
  return timingSafeEqual(key, h.hash);
}

/** Why `user` cannot be a user name in the file, or undefined when it can. */
export function userNameError(user: string): string | undefined {
  if (user === '') return 'the user name is empty';
  if (user.includes(':')) return 'the user name must not contain ":"';
  if (/[\s\p{Cc}]/u.test(user)) return 'the user name must not contain spaces or control characters';
  if (user.startsWith('#')) return 'the user name must not start with "#"';
  return undefined;
}

const COMMENT_OR_BLANK = /^\s*(?:#.*)?$/;

/** The users of a password file; throws ConfigError with `file:line` on a bad line. */
export function parsePasswordFile(text: string, file: string): Map<string, PasswordHash> {
  const users = new Map<string, PasswordHash>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (COMMENT_OR_BLANK.test(line)) continue;
    const colon = line.indexOf(':');
    const user = line.slice(0, Math.max(colon, 0));
    const h = colon > 0 && userNameError(user) === undefined ? parseHash(line.slice(colon + 1).trim()) : undefined;
    if (!h) throw new ConfigError(`${file}:${i + 1}: expected user:scrypt$N$r$p$<salt>$<hash>`);
    if (users.has(user)) throw new ConfigError(`${file}:${i + 1}: user ${user} appears twice`);
    users.set(user, h);
  }
  return users;
}

/** `text` with `user`'s line replaced by (or, for a new user, appended as) `user:encoded`. */
export function setUserLine(text: string, user: string, encoded: string): string {
  const entry = `${user}:${encoded}`;
  const lines = text === '' ? [] : text.replace(/\r?\n$/, '').split(/\r?\n/);
  const at = lines.findIndex((l) => l.startsWith(`${user}:`));
  if (at >= 0) lines[at] = entry;
  else lines.push(entry);
  return `${lines.join('\n')}\n`;
}
