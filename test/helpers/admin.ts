// Requests to a test node's management API with the default credentials (admin/public).
import type { NodeProcess } from './node-process.js';

const AUTH = `Basic ${Buffer.from('admin:public').toString('base64')}`;

/** One request; `path` from the root (e.g. `/api/v4/stats`). Any status is returned, not thrown. */
export async function adminRequest(
  node: Pick<NodeProcess, 'mgmtPort'>,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`http://127.0.0.1:${node.mgmtPort}${path}`, {
    method,
    headers: body === undefined ? { authorization: AUTH } : { authorization: AUTH, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** A `/api/v5` call that must succeed: returns its JSON, throws with the status and body otherwise. */
export async function v5(node: Pick<NodeProcess, 'mgmtPort'>, method: string, path: string, body?: unknown): Promise<unknown> {
  const { status, json } = await adminRequest(node, method, `/api/v5${path}`, body);
  if (status < 200 || status > 299) throw new Error(`${method} ${path}: ${status} ${JSON.stringify(json)}`);
  return json;
}
