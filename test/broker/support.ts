// Helpers for the broker integration tests that the shared harness (test/helpers/) does not have:
// whole MQTT packets over a raw socket, config files, polling, and a node process's RSS.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { Test } from 'tap';
import { repoRoot } from '../helpers/build.js';
import { run, type RawClient } from '../helpers/clients.js';
import { rssBytes } from '../../native-bench/lib/proc.js';
import { defaultConfig, type Config } from '../../src/config/schema.js';

/** Bytes of one packet, encoded by mqtt-packet (an encoder independent of ours). */
export function bytes(packet: Packet, protocolVersion: 3 | 4 | 5 = 4): Buffer {
  return mqttPacket.generate(packet, { protocolVersion });
}

/** A CONNECT for `clientId` as raw bytes; 5.0 with `properties` when given. */
export function connectBytes(clientId: string, protocolVersion: 3 | 4 | 5, extra: Partial<mqttPacket.IConnectPacket> = {}): Buffer {
  return bytes(
    {
      cmd: 'connect',
      protocolId: protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion,
      clientId,
      clean: true,
      keepalive: 0,
      ...extra,
    },
    protocolVersion,
  );
}

/**
 * Reads one whole packet from a raw client and decodes it with mqtt-packet. Returns null when
 * the peer closes before a whole packet arrived.
 */
export async function readPacket(raw: RawClient, protocolVersion: 3 | 4 | 5 = 4, timeoutMs = 5000): Promise<Packet | null> {
  const head = await raw.read(1, timeoutMs);
  if (head.length < 1) return null;
  const parts = [head];
  let length = 0;
  for (let i = 0, mul = 1; i < 4; i++, mul *= 128) {
    const b = await raw.read(1, timeoutMs);
    if (b.length < 1) return null;
    parts.push(b);
    const byte = b[0] as number;
    length += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) break;
  }
  if (length > 0) {
    const body = await raw.read(length, timeoutMs);
    if (body.length < length) return null;
    parts.push(body);
  }
  const parser = mqttPacket.parser({ protocolVersion });
  let packet: Packet | null = null;
  let error: Error | null = null;
  parser.on('packet', (p: Packet) => (packet = p));
  parser.on('error', (e: Error) => (error = e));
  parser.parse(Buffer.concat(parts));
  if (error !== null) throw error;
  return packet;
}

/** Connects a raw client: sends CONNECT, returns the CONNACK. */
export async function rawHandshake(raw: RawClient, clientId: string, protocolVersion: 3 | 4 | 5, extra: Partial<mqttPacket.IConnectPacket> = {}): Promise<mqttPacket.IConnackPacket> {
  raw.send(connectBytes(clientId, protocolVersion, extra));
  const connack = await readPacket(raw, protocolVersion);
  if (connack?.cmd !== 'connack') throw new Error(`expected CONNACK, got ${JSON.stringify(connack)}`);
  return connack;
}

/** Writes a JSON config file in a temp dir removed on teardown; returns its path. */
export function configFile(t: Test, sections: Record<string, Record<string, unknown>>, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-conf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const resolved = JSON.stringify(sections).replaceAll('@DIR@', dir);
  const file = join(dir, 'tidemq.json');
  writeFileSync(file, resolved);
  return file;
}

/** Polls `cond` every 20 ms until it holds; throws after timeoutMs naming `what`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A node's config for startNode in this test process: any free ports, no WebSocket, data in the test's dir. */
export function inProcessNodeConfig(t: Test, name: string): Config {
  const config = defaultConfig();
  config.node.name = name;
  config.node.data_dir = t.testdir();
  config.listeners.tcp_port = 0;
  config.listeners.ws_enabled = false;
  config.management.port = 0;
  config.cluster.port = 0;
  return config;
}

/** Resident set size of a node in kB: its process and direct children (bin/tidemq start waits for the node it relaunched with its V8 flags). */
export function rssKb(pid: number): number {
  return rssBytes(pid) / 1024;
}

/** `tidemq passwd FILE USER --password P`. */
export async function tidemqPasswd(file: string, user: string, password: string): Promise<void> {
  const r = await run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'passwd', file, user, '--password', password]);
  if (r.code !== 0) throw new Error(`tidemq passwd failed (${r.code}): ${r.stdout}${r.stderr}`);
}
