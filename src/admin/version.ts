// The tidemq version, from package.json (same relative path from src/admin/ and dist/admin/).
import { readFileSync } from 'node:fs';

/** The standalone binary's package.json also names the commit it was built from (src/build/payload.ts). */
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string; build?: { commit: string } };

export const VERSION: string = pkg.version;
/** What `tidemq --version` prints: a standalone binary adds its commit and the Node.js it carries. */
export const VERSION_LINE: string = pkg.build === undefined ? VERSION : `${VERSION} (commit ${pkg.build.commit}, Node.js ${process.version})`;
