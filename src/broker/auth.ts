// Password authentication of CONNECT. Anonymous clients (no user name) are let in iff
// auth.allow_anonymous; a user name needs an entry in the password file and a matching password.
// scrypt is deliberately slow, so verified passwords are remembered (bounded LRU) and concurrent
// checks of the same credentials share one scrypt run: a reconnect storm costs one hash per user.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/schema.js';
import type { Config } from '../config/schema.js';
import { parsePasswordFile, verifyPassword } from './passwords.js';
import type { PasswordHash } from './passwords.js';

export interface Authenticator {
  /** true/false at once when it can decide synchronously (anonymous, or a cached result), else a Promise (scrypt runs on the threadpool: never scryptSync on the connect path). */
  authenticate(clientId: string, username: string | undefined, password: Buffer | undefined): boolean | Promise<boolean>;
}

/** Verified credentials remembered; each entry is a short string, so this bounds memory to ~1 MB. */
export const AUTH_CACHE_SIZE = 10_000;

function readUsers(file: string): Map<string, PasswordHash> {
  if (file === '') return new Map();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read auth.password_file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parsePasswordFile(text, file);
}

/** Reads auth.password_file once; throws ConfigError naming the file when it is missing or bad. */
export function createAuthenticator(auth: Config['auth']): Authenticator {
  const users = readUsers(auth.password_file);
  // Map iteration order is insertion order: re-inserting on a hit makes the first key the LRU one.
  const verified = new Map<string, true>();
  const pending = new Map<string, Promise<boolean>>();

  const remember = (key: string): void => {
    verified.set(key, true);
    if (verified.size > AUTH_CACHE_SIZE) {
      const oldest = verified.keys().next();
      if (!oldest.done) verified.delete(oldest.value);
    }
  };

  return {
    authenticate(_clientId, username, password) {
      if (username === undefined) return auth.allow_anonymous;
      const h = users.get(username);
      if (!h || !password) return false;
      // The password itself is never kept: the key holds its SHA-256.
      const key = `${username}\0${createHash('sha256').update(password).digest('base64')}`;
      if (verified.delete(key)) {
        verified.set(key, true);
        return true;
      }
      let check = pending.get(key);
      if (!check) {
        check = verifyPassword(h, password).then(
          (ok) => {
            pending.delete(key);
            if (ok) remember(key);
            return ok;
          },
          () => {
            pending.delete(key);
            return false;
          },
        );
        pending.set(key, check);
      }
      return check;
    },
  };
}
