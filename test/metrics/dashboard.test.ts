// Every PromQL expression of the Grafana dashboards names only metrics a node exports, and the
// dashboards have the panels issue 8 asks for.
import t from 'tap';
import { pino } from 'pino';
import { Cluster } from '../../src/cluster/cluster.js';
import { defaultConfig } from '../../src/config/schema.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { NodeRebalance } from '../../src/rebalance/service.js';
import { dashboardQueries, metricNames, PROMETHEUS_OWN } from './dashboards.js';
import { parsePrometheus } from './prom-text.js';
import { testBroker } from '../helpers/broker.js';

t.test('metricNames reads PromQL', async (t) => {
  t.same(metricNames('sum by (instance) (rate(tidemq_x_total{a="b",c=~"$v"}[$__rate_interval])) * on (instance) group_left (node) tidemq_node_info'), ['tidemq_x_total', 'tidemq_node_info']);
  t.same(metricNames('max by (instance) (a_open / a_max)'), ['a_open', 'a_max']);
  t.same(metricNames('label_values(tidemq_node_info, instance)'), ['tidemq_node_info']);
  t.same(metricNames('count(up{job="tidemq"} == 1)'), ['up']);
  t.same(metricNames('histogram_quantile(0.99, sum by (le, method) (rate(h_bucket[1m])))'), ['h_bucket']);
  t.same(metricNames('sum by (instance) (s{state="a"}) + 2 * sum by (instance) (s{state="b"})'), ['s', 's']);
});

t.test('the dashboards use only exported metrics', async (t) => {
  const config = defaultConfig();
  const log = pino({ level: 'silent' });
  const broker = testBroker({ config, log });
  // A node's full set: the cluster and rebalance metrics come with those parts (not started here).
  const cluster = new Cluster(broker, config, log);
  const rebalance = new NodeRebalance(broker, null, cluster, log);
  t.teardown(() => rebalance.close());
  const listeners = [{ name: 'tcp', stats: { live: 0, accepted: 0, rateLimited: 0, maxConnections: 0, refused: 0, emfile: 0, connectingBytes: 0, accepting: true } }];
  const metrics = new Metrics({ nodeName: config.node.name, version: 'test', broker, listeners, rebalance, cluster });
  const families = parsePrometheus(await metrics.text());
  const exported = new Set<string>();
  for (const [name, f] of families) {
    exported.add(name);
    for (const s of f.samples) exported.add(s.name);
    // A histogram's series exist once it has observations (none here: no RPC was made).
    if (f.type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name + suffix);
  }
  const dashboards = dashboardQueries();
  t.ok(dashboards.length >= 2, 'cluster overview and rebalance dashboards');
  const all = new Set<string>();
  for (const { file, exprs } of dashboards) {
    t.ok(exprs.length >= 10, `${file}: ${exprs.length} queries`);
    const used = new Set(exprs.flatMap(metricNames));
    t.ok(used.has('tidemq_connections') && used.has('tidemq_sessions'), `${file} charts connections and sessions`);
    for (const name of used) {
      all.add(name);
      t.ok(exported.has(name) || PROMETHEUS_OWN.has(name), `${file}: ${name} is exported`);
    }
  }
  for (const name of [
    'tidemq_cluster_rpc_duration_seconds_bucket',
    'tidemq_evacuation_state',
    'tidemq_rebalance_state',
    'tidemq_eviction_agent_enabled',
    'tidemq_connections_evicted_total',
    'tidemq_sessions_evicted_total',
    'tidemq_sessions_migrated_total',
    'tidemq_rebalance_goal',
    'tidemq_rebalance_donor_average',
    'tidemq_cluster_members',
    'tidemq_nodejs_eventloop_lag_seconds',
  ]) {
    t.ok(all.has(name), `a dashboard charts ${name}`);
  }
});

t.test('the cluster metrics come with the cluster source, the rebalance ones with rebalance', async (t) => {
  const config = defaultConfig();
  const log = pino({ level: 'silent' });
  const broker = testBroker({ config, log });
  const cluster = new Cluster(broker, config, log);
  const rebalance = new NodeRebalance(broker, null, cluster, log);
  t.teardown(() => rebalance.close());
  const names = async (sources: { rebalance?: NodeRebalance; cluster?: Cluster }): Promise<Set<string>> =>
    new Set(parsePrometheus(await new Metrics({ nodeName: config.node.name, version: 'test', broker, listeners: [], ...sources }).text()).keys());
  const bare = await names({});
  t.notOk(bare.has('tidemq_cluster_members') || bare.has('tidemq_evacuation_state'), 'a bare broker has neither');
  const rebalanceOnly = await names({ rebalance });
  t.ok(rebalanceOnly.has('tidemq_evacuation_state'));
  t.notOk(rebalanceOnly.has('tidemq_cluster_members'), 'the cluster is not reached through rebalance');
  const clusterOnly = await names({ cluster });
  t.ok(clusterOnly.has('tidemq_cluster_members') && clusterOnly.has('tidemq_sessions_migrated_total'));
  t.notOk(clusterOnly.has('tidemq_evacuation_state'));
});
