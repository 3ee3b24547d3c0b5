// The configuration: its type, the embedded defaults and how each key's value is read. Keys are
// snake_case and named as in the file (`[mqtt] max_packet_size`) and the environment
// (`TIDEMQ_MQTT__MAX_PACKET_SIZE`), so one name is used everywhere.
import { bool, duration, int, nodeList, nodeName, nonEmptyStr, oneOf, port, qos, size, str, urlPath } from './values.js';
import type { ValueSpec } from './values.js';

export interface Config {
  node: { name: string; data_dir: string; cookie: string };
  listeners: {
    bind: string; tcp_port: number; tls_port: number; ws_port: number; wss_port: number; proxy_protocol: boolean;
    tls_cert_file: string; tls_key_file: string; tls_ca_file: string;
    /* Each listener can be switched off; TLS and WSS start only when cert and key files are set. */
    tls_enabled: boolean; ws_enabled: boolean; wss_enabled: boolean; ws_path: string;
    /* TLS: require a client certificate signed by tls_ca_file; use its CN as the MQTT username. */
    tls_verify_peer: boolean; tls_cn_as_username: boolean;
    proxy_header_timeout: number; /* seconds */
    /* Per-listener connection caps beside mqtt.max_connections; 0 = none. */
    tcp_max_connections: number; tls_max_connections: number; ws_max_connections: number; wss_max_connections: number;
    /* Stop accepting while evacuated or rebalanced, so a shared port's siblings take new clients (`start --nodes`). */
    stop_accepting_on_evacuation: boolean;
  };
  mqtt: {
    max_packet_size: number; max_connect_size: number; max_keepalive: number; idle_timeout: number; /* seconds: the CONNECT deadline */
    close_linger: number; /* seconds a closed connection's input is read and discarded before it is cut off */
    max_inflight: number; max_queued: number; max_queued_bytes: number; max_connections: number; max_conn_rate: number; max_conn_burst: number;
    max_topic_levels: number; max_client_id_length: number; max_topic_alias: number; session_expiry_max: number; /* seconds */
    retain_available: boolean; max_qos: 0 | 1 | 2; wildcard_subscriptions: boolean; shared_subscriptions: boolean; subscription_identifiers: boolean;
    /* Memory bounds per client and per node (README "Limits and memory"); 0 = no bound where noted. */
    max_inflight_bytes: number; max_output_buffer: number; slow_consumer_timeout: number; /* seconds, 0 = never */
    max_pending_bytes: number; max_connecting_bytes: number; max_subscriptions: number; /* 0 = none */ max_topic_alias_bytes: number;
  };
  auth: {
    allow_anonymous: boolean; password_file: string; acl_file: string; acl_default: 'allow' | 'deny';
    /* Clients may publish (and set wills) on $SYS/...; off by default, as Mosquitto. */
    allow_sys_publish: boolean;
    /* Read-ACL verdicts remembered (client, topic), for subscriptions a deny rule overlaps. */
    acl_cache_size: number;
    /* Password checks queued or running; past it CONNECT gets Server busy. */
    max_pending_checks: number;
    /* Failed logins per source address per window (0 = no throttle); past it Server busy. */
    max_failed_logins: number; failed_login_window: number; /* seconds */
  };
  management: {
    port: number; bind: string; username: string; password: string; metrics_auth: boolean;
    /* Failed API logins per source address per window (0 = no throttle); past it 429. */
    max_failed_logins: number; failed_login_window: number; /* seconds */
  };
  cluster: {
    port: number; discovery: 'manual' | 'static' | 'dns'; seeds: string[]; dns_name: string; autoclean: number; autoheal: boolean; rpc_timeout: number;
    /* Until a peer has proved the cookie: deadline (s), largest frame, concurrent handshakes accepted. */
    handshake_timeout: number; max_handshake_frame: number; max_pending_handshakes: number;
    /* Bytes queued to a peer: QoS 0 forwards are dropped past half, a QoS 1/2 forward past it fails the link. */
    max_link_backlog: number;
    /* TLS for node-to-node links when cert and key are set; verify_peer: both sides need a certificate signed by tls_ca_file. */
    tls_cert_file: string; tls_key_file: string; tls_ca_file: string; tls_verify_peer: boolean;
  };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' };
}

/** The `tidemq start` flags of SPEC 13. */
export interface StartFlags {
  config?: string; node?: string; portOffset?: number; mqttPort?: number; tlsPort?: number; wsPort?: number; wssPort?: number;
  mgmtPort?: number; clusterPort?: number; dataDir?: string; join?: string[]; cookie?: string;
}

/** A bad configuration; the message names the key and the expected form. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Section = keyof Config;
export type Schema = { readonly [S in Section]: { readonly [K in keyof Config[S]]: ValueSpec<Config[S][K]> } };

const MQTT_MAX_PACKET = 268_435_455; // the largest remaining length MQTT can encode
const U32 = 4_294_967_295;

export const SCHEMA: Schema = {
  node: { name: nodeName(), data_dir: nonEmptyStr(), cookie: nonEmptyStr() },
  listeners: {
    bind: nonEmptyStr(), tcp_port: port(), tls_port: port(), ws_port: port(), wss_port: port(), proxy_protocol: bool(),
    tls_cert_file: str(), tls_key_file: str(), tls_ca_file: str(),
    tls_enabled: bool(), ws_enabled: bool(), wss_enabled: bool(), ws_path: urlPath(),
    tls_verify_peer: bool(), tls_cn_as_username: bool(), proxy_header_timeout: duration(3600),
    tcp_max_connections: int(0, U32), tls_max_connections: int(0, U32), ws_max_connections: int(0, U32), wss_max_connections: int(0, U32),
    stop_accepting_on_evacuation: bool(),
  },
  mqtt: {
    max_packet_size: size(2, MQTT_MAX_PACKET), max_connect_size: size(2, MQTT_MAX_PACKET), max_keepalive: int(0, 65535),
    idle_timeout: duration(86400), close_linger: duration(60), max_inflight: int(1, 65535), max_queued: int(0, U32), max_queued_bytes: size(0, Number.MAX_SAFE_INTEGER),
    max_connections: int(1, U32), max_conn_rate: int(0, U32), max_conn_burst: int(0, U32), max_topic_levels: int(1, 65535),
    max_client_id_length: int(1, 65535), max_topic_alias: int(0, 65535), session_expiry_max: duration(U32),
    retain_available: bool(), max_qos: qos(), wildcard_subscriptions: bool(), shared_subscriptions: bool(), subscription_identifiers: bool(),
    max_inflight_bytes: size(1, Number.MAX_SAFE_INTEGER), max_output_buffer: size(1, Number.MAX_SAFE_INTEGER), slow_consumer_timeout: duration(86400),
    max_pending_bytes: size(0, Number.MAX_SAFE_INTEGER), max_connecting_bytes: size(1, Number.MAX_SAFE_INTEGER), max_subscriptions: int(0, U32),
    max_topic_alias_bytes: size(0, Number.MAX_SAFE_INTEGER),
  },
  auth: {
    allow_anonymous: bool(), password_file: str(), acl_file: str(), acl_default: oneOf(['allow', 'deny']), allow_sys_publish: bool(),
    acl_cache_size: int(0, U32), max_pending_checks: int(1, U32), max_failed_logins: int(0, U32), failed_login_window: duration(86400),
  },
  management: {
    port: port(), bind: nonEmptyStr(), username: nonEmptyStr(), password: nonEmptyStr(), metrics_auth: bool(),
    max_failed_logins: int(0, U32), failed_login_window: duration(86400),
  },
  cluster: {
    port: port(), discovery: oneOf(['manual', 'static', 'dns']), seeds: nodeList(), dns_name: str(),
    autoclean: duration(U32), autoheal: bool(), rpc_timeout: duration(86400),
    handshake_timeout: duration(3600), max_handshake_frame: size(256, 1024 * 1024), max_pending_handshakes: int(1, 65535),
    max_link_backlog: size(64 * 1024, Number.MAX_SAFE_INTEGER),
    tls_cert_file: str(), tls_key_file: str(), tls_ca_file: str(), tls_verify_peer: bool(),
  },
  log: { level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']) },
};

const DEFAULT_NODE_NAME = 'tidemq@127.0.0.1';
/** The built-in cluster cookie: public (it is in the README), so accepted only on loopback. */
export const DEFAULT_COOKIE = 'tidemqsecretcookie';
const CLUSTER_BASE_PORT = 4370;

/** `4370 + N`, N the numeric suffix of the name before '@' (`tidemq2@h` and `tidemq-2@h` -> 4372). */
export function defaultClusterPort(name: string): number {
  const m = /(\d+)$/.exec(name.slice(0, name.indexOf('@')));
  return CLUSTER_BASE_PORT + (m ? Number(m[1]) : 0);
}

/** Whether a bind address or host name reaches only this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function defaultDataDir(name: string): string {
  return `./data/${name}`;
}

/** The embedded defaults: one node on localhost, anonymous access, management on loopback. */
export function defaultConfig(name: string = DEFAULT_NODE_NAME): Config {
  return {
    node: { name, data_dir: defaultDataDir(name), cookie: DEFAULT_COOKIE },
    listeners: {
      bind: '127.0.0.1', tcp_port: 1883, tls_port: 8883, ws_port: 8083, wss_port: 8084, proxy_protocol: false,
      tls_cert_file: '', tls_key_file: '', tls_ca_file: '',
      tls_enabled: true, ws_enabled: true, wss_enabled: true, ws_path: '/mqtt',
      tls_verify_peer: false, tls_cn_as_username: false, proxy_header_timeout: 5,
      tcp_max_connections: 0, tls_max_connections: 0, ws_max_connections: 0, wss_max_connections: 0,
      stop_accepting_on_evacuation: false,
    },
    mqtt: {
      max_packet_size: 1024 * 1024, max_connect_size: 1024 * 1024, max_keepalive: 65535, idle_timeout: 15, close_linger: 1,
      max_inflight: 32, max_queued: 1000, max_queued_bytes: 64 * 1024 * 1024, max_connections: 1_000_000,
      max_conn_rate: 0, max_conn_burst: 0, max_topic_levels: 128, max_client_id_length: 65535, max_topic_alias: 64,
      session_expiry_max: U32, retain_available: true, max_qos: 2, wildcard_subscriptions: true,
      shared_subscriptions: true, subscription_identifiers: true,
      max_inflight_bytes: 16 * 1024 * 1024, max_output_buffer: 4 * 1024 * 1024, slow_consumer_timeout: 30,
      max_pending_bytes: 1024 * 1024, max_connecting_bytes: 32 * 1024 * 1024, max_subscriptions: 10_000, max_topic_alias_bytes: 256 * 1024,
    },
    auth: {
      allow_anonymous: true, password_file: '', acl_file: '', acl_default: 'allow', allow_sys_publish: false,
      acl_cache_size: 10_000, max_pending_checks: 128, max_failed_logins: 20, failed_login_window: 10,
    },
    management: {
      port: 8081, bind: '127.0.0.1', username: 'admin', password: 'public', metrics_auth: false,
      max_failed_logins: 10, failed_login_window: 60,
    },
    cluster: {
      port: defaultClusterPort(name), discovery: 'manual', seeds: [], dns_name: '', autoclean: 300, autoheal: true, rpc_timeout: 15,
      handshake_timeout: 5, max_handshake_frame: 4096, max_pending_handshakes: 128, max_link_backlog: 64 * 1024 * 1024,
      tls_cert_file: '', tls_key_file: '', tls_ca_file: '', tls_verify_peer: false,
    },
    log: { level: 'info' },
  };
}
