// The page's words: the language choice (remembered choice, then the
// browser's list, then English), both languages complete, the Thai really
// Thai, and a banner that never says "attempt 0" or shows a raw error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LANGS, texts, type StaticTexts } from '../../src/app/i18n';
import { chooseLang } from '../../src/app/lang';
import { matches, relativeTime, statusCode, statusLabel } from '../../src/app/list';
import type { DriverView } from '../../src/client/fleet';
import { httpProblem, socketProblem, type ConnState, type Problem } from '../../src/client/connection';
import { HandshakeRefusal } from '../../src/client/events';

test('language: a remembered choice wins, then the first browser language the page speaks, then English', () => {
  assert.equal(chooseLang(null, ['th-TH', 'en-US']), 'th');
  assert.equal(chooseLang(null, ['en-GB', 'th']), 'en');
  assert.equal(chooseLang(null, ['fr-FR', 'TH']), 'th');
  assert.equal(chooseLang(null, ['de-DE']), 'en');
  assert.equal(chooseLang(null, []), 'en');
  assert.equal(chooseLang('en', ['th-TH']), 'en');
  assert.equal(chooseLang('th', ['en-US']), 'th');
  assert.equal(chooseLang('xx', ['th-TH']), 'th', 'a stored value the page does not know is ignored');
});

const STATIC_KEYS: (keyof StaticTexts)[] = [
  'title', 'heading', 'signOut', 'language', 'mapLabel', 'drivers', 'filterPlaceholder', 'filterLabel',
  'colDriver', 'colStatus', 'colPresence', 'colLastSeen', 'legendFresh', 'legendStale', 'legendOld',
  'legendOffline', 'signinTitle', 'signinIntro', 'signinToken', 'signinSubmit', 'devSummary', 'devHelp',
];
const THAI = /[\u0E00-\u0E7F]/;

test('every text exists in both languages, and the Thai ones are written in Thai', () => {
  for (const lang of LANGS) {
    const t = texts(lang);
    for (const k of STATIC_KEYS) assert.ok(t[k].trim().length > 0, `${lang}.${k}`);
    for (const k of ['showAll', 'showAllTitle', 'zoomIn', 'zoomOut', 'centre', 'cursor', 'online', 'offline', 'noPosition', 'statusNotReported'] as const) {
      assert.ok(t[k].trim().length > 0, `${lang}.${k}`);
    }
  }
  const th = texts('th');
  const en = texts('en');
  for (const k of STATIC_KEYS) assert.match(th[k], THAI, `th.${k} is Thai: ${th[k]}`);
  for (const k of STATIC_KEYS) assert.doesNotMatch(en[k], THAI, `en.${k}`);
  assert.deepEqual(Object.keys(th.status).sort(), Object.keys(en.status).sort());
  assert.deepEqual(Object.keys(th.role).sort(), Object.keys(en.role).sort());
  for (const v of Object.values(th.status)) assert.match(v, THAI);
  assert.match(th.statusNotReported, THAI);
  assert.doesNotMatch(en.statusNotReported, THAI);
});

const PROBLEMS: Problem[] = ['unreachable', 'cut', 'timeout', 'server-error', 'refused', 'closed-by-server'];
const STATES: ConnState[] = [
  { kind: 'connecting' },
  { kind: 'live' },
  { kind: 'catching-up', events: 12 },
  { kind: 'resynced-after-gap', reason: 'gap' },
  { kind: 'resynced-after-gap', reason: 'new-stream' },
  ...PROBLEMS.map((problem): ConnState => ({ kind: 'reconnecting', attempt: 1, problem })),
  { kind: 'http-fallback', attempt: 2, behind: false },
  { kind: 'http-fallback', attempt: 2, behind: true },
  ...Object.values(HandshakeRefusal).map((refusal): ConnState => ({ kind: 'auth-failed', refusal, retrying: true })),
  { kind: 'stopped' },
];

test('banner: every state worded in both languages; not live → the age of the newest data', () => {
  for (const lang of LANGS) {
    const t = texts(lang);
    const seen = new Set<string>();
    for (const s of STATES) {
      const text = t.banner(s, 42_000);
      assert.ok(text.length > 0);
      seen.add(text);
      const current = s.kind === 'live' || s.kind === 'resynced-after-gap';
      assert.equal(text.includes(t.ago(42_000)), !current, `${lang} ${JSON.stringify(s)}: ${text}`);
      if (lang === 'th') assert.match(text, THAI);
    }
    assert.equal(seen.size, STATES.length, `${lang}: states are told apart`);
  }
  assert.equal(
    texts('en').banner({ kind: 'reconnecting', attempt: 1, problem: 'unreachable' }, 65_000),
    'Connection lost: the server cannot be reached. Reconnecting (attempt 1) · newest data on screen: 1 min ago',
  );
  assert.equal(
    texts('th').banner({ kind: 'reconnecting', attempt: 1, problem: 'unreachable' }, 65_000),
    'ขาดการเชื่อมต่อ: ติดต่อเซิร์ฟเวอร์ไม่ได้ กำลังเชื่อมต่อใหม่ (ครั้งที่ 1) · ข้อมูลล่าสุดบนจอ 1 นาทีที่แล้ว',
  );
  assert.match(texts('en').banner({ kind: 'http-fallback', attempt: 1, behind: true }, 0), /^Catching up/, 'a backlog is not "live"');
});

test('socket and HTTP failures map to problems an officer can read', () => {
  assert.equal(socketProblem('transport close'), 'cut');
  assert.equal(socketProblem('ping timeout'), 'timeout');
  assert.equal(socketProblem('io server disconnect'), 'closed-by-server');
  assert.equal(socketProblem('websocket error'), 'unreachable');
  assert.equal(socketProblem('xhr poll error'), 'unreachable');
  assert.equal(httpProblem(503), 'server-error');
  assert.equal(httpProblem(504), 'timeout');
  assert.equal(httpProblem(401), 'refused');
});

test('list: statuses worded (unknown ones as sent), ages in the page language', () => {
  assert.equal(statusLabel('ON_TRIP', texts('th')), 'ออกปฏิบัติงาน');
  assert.equal(statusLabel('ON_TRIP', texts('en')), 'On trip');
  assert.equal(statusLabel('ON_BREAK', texts('th')), 'ON_BREAK');
  const now = Date.parse('2026-01-16T08:30:00.000Z');
  assert.equal(relativeTime(now - 5_000, now, texts('th')), '5 วินาทีที่แล้ว');
  assert.equal(relativeTime(now - 3 * 60_000, now, texts('en')), '3 min ago');
  assert.equal(relativeTime(null, now, texts('en')), '—');
  assert.match(relativeTime(now - 72 * 3600_000, now, texts('th')), /2569/, 'an old date in the Buddhist era');
});

test('list: a status not reported yet is said to be so, never shown as a status', () => {
  assert.equal(statusLabel(null, texts('th')), 'ยังไม่รายงานสถานะ');
  assert.equal(statusLabel(null, texts('en')), 'Not reported');
  for (const lang of LANGS) {
    const t = texts(lang);
    assert.ok(!Object.values(t.status).includes(t.statusNotReported), `${lang}: told apart from every status`);
  }
  assert.equal(statusCode(null), '', 'data-status of an unknown status');
  assert.equal(statusCode('ON_DUTY'), 'ON_DUTY');
  const d: DriverView = { driverId: 'amb-1', marker: null, trail: [], status: null, online: true, lastSeen: null };
  assert.ok(matches(d, 'not rep', texts('en')), 'filtered by its label');
  assert.ok(matches(d, 'ยังไม่รายงาน', texts('th')));
  assert.ok(!matches(d, 'available', texts('en')));
  assert.ok(matches({ ...d, status: 'AVAILABLE' }, 'available', texts('en')));
});
