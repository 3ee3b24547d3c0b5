// The management HTTP server's only contact with uWebSockets.js: a request is copied into plain
// data before the uWS callback returns (uWS reuses its request and body buffers), handled
// asynchronously, and answered unless the client went away first (onAborted).
import { STATUS_CODES } from 'node:http';
import uWS, { type HttpResponse, type us_listen_socket } from '@trufflesuite/uws-js-unofficial';

export interface HttpRequestData {
  /** Upper case, e.g. GET. */
  readonly method: string;
  /** The path, percent-encoded as received, without the query string. */
  readonly path: string;
  /** The raw query string, without '?'. */
  readonly query: string;
  /** The Authorization header, '' when absent. */
  readonly authorization: string;
  /** null: the body was over the size limit (and was not read further). */
  readonly body: Buffer | null;
}

export interface HttpReply {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body: string;
}

export type HttpHandler = (req: HttpRequestData) => Promise<HttpReply>;

export interface HttpServer {
  readonly port: number;
  /** Stops accepting connections. */
  close(): void;
}

interface Pending {
  aborted: boolean;
}

function send(res: HttpResponse, pending: Pending, reply: HttpReply): void {
  if (pending.aborted) return;
  res.cork(() => {
    res.writeStatus(`${reply.status} ${STATUS_CODES[reply.status] ?? ''}`);
    for (const [name, value] of Object.entries(reply.headers ?? {})) res.writeHeader(name, value);
    res.end(reply.body);
  });
}

/**
 * Reads a request body of at most maxBody bytes; over it, done(null) once and the rest is
 * ignored. Each chunk is copied: uWS neuters it when the callback returns.
 */
function readBody(res: HttpResponse, maxBody: number, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  res.onData((chunk, isLast) => {
    if (over) return;
    size += chunk.byteLength;
    if (size > maxBody) {
      over = true;
      done(null);
      return;
    }
    chunks.push(Buffer.from(new Uint8Array(chunk)));
    if (isLast) done(Buffer.concat(chunks, size));
  });
}

/**
 * Listens on host:port (0: a free port) and answers every request with `handler`, which is
 * expected to turn its own errors into replies: a rejection is answered with a bare 500.
 */
export async function listenHttp(host: string, port: number, maxBody: number, handler: HttpHandler): Promise<HttpServer> {
  const app = uWS.App();
  app.any('/*', (res, req) => {
    const pending: Pending = { aborted: false };
    res.onAborted(() => {
      pending.aborted = true;
    });
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    const query = req.getQuery() ?? '';
    const authorization = req.getHeader('authorization');
    const length = Number(req.getHeader('content-length') || '0');
    const hasBody = length > 0 || req.getHeader('transfer-encoding') !== '';
    const dispatch = (body: Buffer | null): void => {
      handler({ method, path, query, authorization, body }).then(
        (reply) => send(res, pending, reply),
        () => send(res, pending, { status: 500, body: '' }),
      );
    };
    if (!hasBody) dispatch(Buffer.alloc(0));
    else if (length > maxBody) dispatch(null);
    else readBody(res, maxBody, dispatch);
  });
  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(host, port, (ls) => {
      if (ls === false) reject(new Error(`cannot listen for the management API on ${host}:${port}`));
      else resolve(ls);
    });
  });
  return {
    port: uWS.us_socket_local_port(listenSocket),
    close: () => uWS.us_listen_socket_close(listenSocket),
  };
}
