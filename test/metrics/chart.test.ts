// `npm run chart`: the SVG renderer, the time and name helpers, and the command against a small
// stand-in for Prometheus's query_range API (the real one is in prometheus.test.ts).
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULT_QUERY, parseTime, runChart, seriesName, totalSeries } from '../../src/cli/chart.js';
import { niceTicks, renderChart } from '../../src/metrics/svg-chart.js';

t.test('niceTicks: 1/2/5 steps from 0 to at least the maximum', async (t) => {
  t.same(niceTicks(100), [0, 20, 40, 60, 80, 100]);
  t.same(niceTicks(61), [0, 20, 40, 60, 80]);
  t.same(niceTicks(3), [0, 1, 2, 3]);
  t.same(niceTicks(0), [0, 1], 'an all-zero chart still has a scale');
});

t.test('parseTime: now, relative, unix seconds, ISO dates', async (t) => {
  const now = 1_700_000_000;
  t.equal(parseTime('now', now), now);
  t.equal(parseTime('now-15m', now), now - 900);
  t.equal(parseTime('-2h', now), now - 7200);
  t.equal(parseTime('1699999000.5', now), 1699999000.5);
  t.equal(parseTime('2023-11-14T22:13:20Z', now), 1_700_000_000);
  t.throws(() => parseTime('yesterday', now), /not a time: yesterday/);
});

t.test('series names and the total line', async (t) => {
  t.equal(seriesName({ instance: '127.0.0.1:8081', node: 'tidemq1@127.0.0.1' }), 'tidemq1@127.0.0.1');
  t.equal(seriesName({ instance: '127.0.0.1:8081' }), '127.0.0.1:8081');
  t.equal(seriesName({ state: 'up', job: 'x' }), 'state=up,job=x');
  const total = totalSeries([
    { labels: {}, points: [[1, 2], [2, 3]] },
    { labels: {}, points: [[2, 5], [3, NaN]] },
  ]);
  t.same(total.points, [[1, 2], [2, 8]]);
  t.equal(total.dashed, true);
});

t.test('renderChart: one path per series, gaps break the line, names escaped', async (t) => {
  const svg = renderChart(
    [
      { name: 'a<b>&"node"', points: [[0, 10], [1, 20], [2, 30], [5, 0]] },
      { name: 'total', dashed: true, points: [[0, 1], [1, NaN], [2, 3]] },
    ],
    { title: 'Connections & more', step: 1 },
  );
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  t.match(svg, /<\/svg>\n$/);
  const paths = [...svg.matchAll(/<path d="([^"]*)"/g)].map((m) => m[1] as string);
  t.equal(paths.length, 2);
  t.equal(paths[0]?.match(/M/g)?.length, 2, 'a gap of 3 steps starts a new segment');
  t.equal(paths[1]?.match(/M/g)?.length, 2, 'a NaN breaks the line');
  t.match(svg, 'a&#60;b&#62;&#38;&#34;node&#34;');
  t.notMatch(svg, 'a<b>');
  t.match(svg, 'Connections &#38; more');
  t.match(svg, 'stroke-dasharray');
  // Every value maps inside the plot: y of 30 (the maximum) is the top tick.
  const ys = [...(paths[0] ?? '').matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
  t.ok(ys.every((y) => y >= 40 && y <= 430), `y within the plot area: ${ys.join(' ')}`);
});

t.test('runChart writes the SVG of a range query', async (t) => {
  const asked: URLSearchParams[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    asked.push(url.searchParams);
    res.setHeader('content-type', 'application/json');
    if (url.searchParams.get('query') === 'bad(') {
      res.statusCode = 400;
      res.end(JSON.stringify({ status: 'error', errorType: 'bad_data', error: 'parse error' }));
      return;
    }
    const values = (v: number[]): Array<[number, string]> => v.map((x, i) => [1000 + i, String(x)]);
    res.end(JSON.stringify({
      status: 'success',
      data: { resultType: 'matrix', result: [
        { metric: { instance: 'a:1', node: 'n2@h' }, values: values([0, 5, 10]) },
        { metric: { instance: 'b:1', node: 'n1@h' }, values: values([10, 5, 0]) },
      ] },
    }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const dir = mkdtempSync(join(tmpdir(), 'tidemq-chart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'c.svg');
  let printed = '';
  const code = await runChart(['--prometheus', base, '--from', '1000', '--to', '1002', '--total', '--out', file], (s) => (printed += s));
  t.equal(code, 0);
  t.match(printed, `${file}: 2 series`);
  t.equal(asked[0]?.get('query'), DEFAULT_QUERY);
  t.equal(asked[0]?.get('step'), '1', 'a short range: 1 s steps');
  const svg = readFileSync(file, 'utf8');
  t.equal([...svg.matchAll(/<path /g)].length, 3, 'two nodes and the total');
  t.ok(svg.indexOf('n1@h') < svg.indexOf('n2@h'), 'legend sorted by node');
  t.match(svg, 'Connections per node');

  let errors = '';
  t.equal(await runChart(['--prometheus', base, '--query', 'bad(', '--out', file], undefined, (s) => (errors += s)), 1);
  t.match(errors, 'chart: query failed: parse error');
  errors = '';
  t.equal(await runChart(['--nope'], undefined, (s) => (errors += s)), 2);
  t.match(errors, /Unknown option '--nope'[\s\S]*Usage: npm run chart/);
  t.equal(await runChart(['--from', 'now', '--to', 'now-1h'], undefined, () => {}), 2);
});
