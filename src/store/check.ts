// Integrity check of an existing store, run as a child process by LmdbStore.open: opens the
// environment and reads every database end to end. A damaged file may crash this process rather
// than throw; the parent reports either as a startup error naming the path.
import { open } from 'lmdb';

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write('usage: check.js <store path>\n');
  process.exit(2);
}
try {
  const env = open({ path, maxDbs: 12, readOnly: true });
  for (const name of ['sessions', 'inflight', 'incoming', 'queue', 'retained', 'node', 'garbage']) {
    // Read-only, a database the store has not created yet opens as undefined.
    const db = env.openDB({ name }) as ReturnType<typeof env.openDB> | undefined;
    if (db === undefined) continue;
    for (const entry of db.getRange()) void entry.value;
  }
  await env.close();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
