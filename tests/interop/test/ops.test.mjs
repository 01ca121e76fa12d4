// Operations (issue 16): every metric the shipped alert rules
// (deploy/prometheus/wecare-alerts.yml) read is one the server exports — a
// renamed metric would silence an alert without any test failing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, repoRoot } from '../lib/server.mjs';
import { rest } from '../lib/client.mjs';

const started = [];
after(async () => { for (const s of started) await s.dispose(); });

test('every wecare_* metric an alert rule reads is exported by /metrics, with the node\'s readiness and its data folder\'s disk', async () => {
  const rules = readFileSync(path.join(repoRoot, 'deploy', 'prometheus', 'wecare-alerts.yml'), 'utf8');
  const used = new Set([...rules.matchAll(/\b(wecare_[a-z_]+)/g)].map((m) => m[1]));
  assert.ok(used.size >= 10, [...used].join(' '));
  const s = await startServer({ env: { FORWARD_URL: 'http://127.0.0.1:9/api/driver-locations/{driverId}', AUTH_CHECK_URL: 'http://127.0.0.1:9/me' } });
  started.push(s);
  const r = await rest(s, 'GET', '/metrics');
  assert.equal(r.status, 200);
  const exported = new Set([...r.text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
  const missing = [...used].filter((m) => !exported.has(m));
  assert.deepEqual(missing, [], 'metrics the alerts read but the server does not export');
  assert.match(r.text, /^wecare_ready 1$/m);
  const free = Number(/^wecare_data_dir_free_bytes (\S+)$/m.exec(r.text)?.[1]);
  const size = Number(/^wecare_data_dir_size_bytes (\S+)$/m.exec(r.text)?.[1]);
  assert.ok(free > 0 && size >= free, `free ${free} of ${size}`);
});
