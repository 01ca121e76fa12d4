/**
 * Every string the Map Command page shows, in Thai and English — the one
 * place to read or change wording. Dispatchers work in Thai, so the Thai is
 * written for them (plain, polite, short enough for a banner), not
 * translated word for word. Codes from the wire (statuses, roles, refusals,
 * connection problems) are worded here; a code this page does not know is
 * shown as sent rather than hidden, and a status not reported yet is said
 * to be so (never shown as a status it might not be).
 */
import type { ConnState, Problem } from '../client/connection';
import { HandshakeRefusal } from '../client/events';

export type Lang = 'th' | 'en';
/** In the order the language switch lists them. */
export const LANGS: readonly Lang[] = ['th', 'en'];

/** The static texts of index.html, by the key in its `data-i18n*` attributes. */
export interface StaticTexts {
  title: string;
  heading: string;
  signOut: string;
  language: string;
  mapLabel: string;
  drivers: string;
  filterPlaceholder: string;
  filterLabel: string;
  colDriver: string;
  colStatus: string;
  colPresence: string;
  colLastSeen: string;
  legendFresh: string;
  legendStale: string;
  legendOld: string;
  legendOffline: string;
  signinTitle: string;
  signinIntro: string;
  signinToken: string;
  signinSubmit: string;
  devSummary: string;
  /** `backticks` mark code. */
  devHelp: string;
}

export interface Texts extends StaticTexts {
  /** The language's own name, for the switch. */
  name: string;
  showAll: string;
  showAllTitle: string;
  zoomIn: string;
  zoomOut: string;
  centre: string;
  cursor: string;
  /** HTML (Leaflet's attribution control renders it). */
  osmAttribution: string;
  online: string;
  offline: string;
  noPosition: string;
  /** A driver that has not reported a status yet (contract v1.3: none is assumed). */
  statusNotReported: string;
  status: Record<string, string>;
  role: Record<string, string>;
  /** How long ago, from a duration in ms. */
  ago(ms: number): string;
  /** An absolute time shown when "ago" gets long. */
  dateTime(epochMs: number): string;
  who(name: string, role: string | null, expiresAt: number | null): string;
  /** The banner; `newestAgeMs` is how old the newest data on screen is (null: none). */
  banner(s: ConnState, newestAgeMs: number | null): string;
  refusal(r: HandshakeRefusal): string;
  signinRefused(r: HandshakeRefusal): string;
  problem(p: Problem): string;
}

const time = (locale: string, epochMs: number) =>
  new Date(epochMs).toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' });

const en: Texts = {
  name: 'English',
  title: 'WeCare — Map Command',
  heading: 'Map Command',
  signOut: 'Sign out',
  language: 'Language',
  mapLabel: 'Map of the fleet',
  drivers: 'Drivers',
  filterPlaceholder: 'Filter by id, e-mail, status…',
  filterLabel: 'Filter drivers',
  colDriver: 'Driver',
  colStatus: 'Status',
  colPresence: 'Presence',
  colLastSeen: 'Last seen',
  legendFresh: 'fix < 60 s',
  legendStale: '> 60 s',
  legendOld: '> 120 s',
  legendOffline: 'offline',
  signinTitle: 'Sign in to Map Command',
  signinIntro:
    'Paste the access token the WeCare backend issued you (officer, admin, radio centre, executive or developer).',
  signinToken: 'Access token',
  signinSubmit: 'Sign in',
  devSummary: 'Development',
  devHelp:
    'Mint a token with `wecare-rt token --role officer` (same `JWT_SECRET` as the server), or open this page with `?token=…`. ' +
    '`?tiles=none` hides the tile layer; `?tiles=https://…/{z}/{x}/{y}.png` uses another tile server.',
  showAll: 'Show all',
  showAllTitle: 'Fit the map to the whole fleet (and keep it in view)',
  zoomIn: 'Zoom in',
  zoomOut: 'Zoom out',
  centre: 'centre',
  cursor: 'cursor',
  osmAttribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
  online: 'online',
  offline: 'offline',
  noPosition: 'no position yet',
  statusNotReported: 'Not reported',
  status: {
    AVAILABLE: 'Available',
    BUSY: 'Busy',
    ON_TRIP: 'On trip',
    ON_DUTY: 'On duty',
    OFF_DUTY: 'Off duty',
    UNAVAILABLE: 'Unavailable',
    OFFLINE: 'Offline',
  },
  role: {
    officer: 'officer',
    admin: 'admin',
    radio_center: 'radio centre',
    executive: 'executive',
    developer: 'developer',
    driver: 'driver',
  },
  ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s ago`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ago`;
    const h = Math.floor(m / 60);
    return `${h} h ago`;
  },
  dateTime: (t) => new Date(t).toLocaleString('en-GB'),
  who: (name, role, exp) => `${name}${role ? ` (${role})` : ''}${exp ? ` · token valid until ${time('en-GB', exp)}` : ''}`,
  banner(s, age) {
    const newest = age === null ? 'no data on screen yet' : `newest data on screen: ${this.ago(age)}`;
    switch (s.kind) {
      case 'connecting':
        return age === null ? 'Connecting…' : `Connecting… · ${newest}`;
      case 'live':
        return 'Live';
      case 'catching-up':
        return `Catching up (${s.events} events) · ${newest}`;
      case 'resynced-after-gap':
        return s.reason === 'new-stream'
          ? 'Live — reloaded the fleet (the server has a new event stream)'
          : 'Live — reloaded the fleet after missing events';
      case 'reconnecting':
        return `Connection lost: ${this.problem(s.problem)}. Reconnecting (attempt ${s.attempt}) · ${newest}`;
      case 'http-fallback':
        return s.behind
          ? `Catching up over the backup connection (HTTP) · ${newest}`
          : `Live over the backup connection (HTTP) while reconnecting (attempt ${s.attempt}) · ${newest}`;
      case 'auth-failed':
        return `Sign-in refused: ${this.refusal(s.refusal)}${s.retrying ? ' — retrying with a fresh token' : ''} · ${newest}`;
      case 'stopped':
        return `Disconnected · ${newest}`;
    }
  },
  refusal(r) {
    switch (r) {
      case HandshakeRefusal.AuthRequired:
        return 'no token was given';
      case HandshakeRefusal.InvalidToken:
        return 'the token is not valid';
      case HandshakeRefusal.TokenExpired:
        return 'the token has expired';
      case HandshakeRefusal.Forbidden:
        return 'this account may not watch the fleet';
    }
  },
  signinRefused(r) {
    return `The server refused the token: ${this.refusal(r)}. Paste a new one.`;
  },
  problem(p) {
    switch (p) {
      case 'unreachable':
        return 'the server cannot be reached';
      case 'cut':
        return 'the connection to the server was cut';
      case 'timeout':
        return 'the server stopped answering';
      case 'server-error':
        return 'the server reported an internal problem';
      case 'refused':
        return 'the server refused the request';
      case 'closed-by-server':
        return 'the server closed the connection';
    }
  },
};

const th: Texts = {
  name: 'ไทย',
  title: 'WeCare — แผนที่ศูนย์สั่งการ',
  heading: 'แผนที่ศูนย์สั่งการ',
  signOut: 'ออกจากระบบ',
  language: 'ภาษา',
  mapLabel: 'แผนที่ตำแหน่งรถ',
  drivers: 'พนักงานขับรถ',
  filterPlaceholder: 'ค้นหาตามรหัส อีเมล หรือสถานะ…',
  filterLabel: 'ค้นหาพนักงานขับรถ',
  colDriver: 'คนขับ',
  colStatus: 'สถานะ',
  colPresence: 'การเชื่อมต่อ',
  colLastSeen: 'อัปเดตล่าสุด',
  legendFresh: 'ตำแหน่ง < 60 วินาที',
  legendStale: '> 60 วินาที',
  legendOld: '> 120 วินาที',
  legendOffline: 'ออฟไลน์',
  signinTitle: 'เข้าสู่ระบบแผนที่ศูนย์สั่งการ',
  signinIntro:
    'วางโทเค็นเข้าใช้งานที่ระบบ WeCare ออกให้คุณ (สำหรับเจ้าหน้าที่ ผู้ดูแลระบบ ศูนย์วิทยุ ผู้บริหาร หรือนักพัฒนา)',
  signinToken: 'โทเค็นเข้าใช้งาน',
  signinSubmit: 'เข้าสู่ระบบ',
  devSummary: 'สำหรับนักพัฒนา',
  devHelp:
    'สร้างโทเค็นด้วยคำสั่ง `wecare-rt token --role officer` (ใช้ `JWT_SECRET` เดียวกับเซิร์ฟเวอร์) หรือเปิดหน้านี้ด้วย `?token=…` ' +
    '· `?tiles=none` ซ่อนภาพแผนที่พื้นหลัง · `?tiles=https://…/{z}/{x}/{y}.png` ใช้เซิร์ฟเวอร์แผนที่อื่น',
  showAll: 'แสดงทั้งหมด',
  showAllTitle: 'ปรับแผนที่ให้เห็นรถทุกคัน (และติดตามต่อไป)',
  zoomIn: 'ขยาย',
  zoomOut: 'ย่อ',
  centre: 'กึ่งกลาง',
  cursor: 'เมาส์',
  osmAttribution: '&copy; ผู้ร่วมให้ข้อมูล <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>',
  online: 'ออนไลน์',
  offline: 'ออฟไลน์',
  noPosition: 'ยังไม่มีตำแหน่ง',
  statusNotReported: 'ยังไม่รายงานสถานะ',
  status: {
    AVAILABLE: 'พร้อมรับงาน',
    BUSY: 'ไม่ว่าง',
    ON_TRIP: 'ออกปฏิบัติงาน',
    ON_DUTY: 'เข้าเวร',
    OFF_DUTY: 'ออกเวร',
    UNAVAILABLE: 'ไม่พร้อมรับงาน',
    OFFLINE: 'ออฟไลน์',
  },
  role: {
    officer: 'เจ้าหน้าที่',
    admin: 'ผู้ดูแลระบบ',
    radio_center: 'ศูนย์วิทยุ',
    executive: 'ผู้บริหาร',
    developer: 'นักพัฒนา',
    driver: 'พนักงานขับรถ',
  },
  ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} วินาทีที่แล้ว`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} นาทีที่แล้ว`;
    const h = Math.floor(m / 60);
    return `${h} ชั่วโมงที่แล้ว`;
  },
  // th-TH writes the Buddhist-era year, as Thai readers expect.
  dateTime: (t) => new Date(t).toLocaleString('th-TH'),
  who: (name, role, exp) => `${name}${role ? ` (${role})` : ''}${exp ? ` · โทเค็นใช้ได้ถึง ${time('th-TH', exp)} น.` : ''}`,
  banner(s, age) {
    const newest = age === null ? 'ยังไม่มีข้อมูลบนจอ' : `ข้อมูลล่าสุดบนจอ ${this.ago(age)}`;
    switch (s.kind) {
      case 'connecting':
        return age === null ? 'กำลังเชื่อมต่อ…' : `กำลังเชื่อมต่อ… · ${newest}`;
      case 'live':
        return 'ข้อมูลเรียลไทม์';
      case 'catching-up':
        return `กำลังดึงข้อมูลที่ขาดไป (${s.events} รายการ) · ${newest}`;
      case 'resynced-after-gap':
        return s.reason === 'new-stream'
          ? 'ข้อมูลเรียลไทม์ — โหลดข้อมูลรถทั้งหมดใหม่แล้ว (เซิร์ฟเวอร์เริ่มชุดข้อมูลใหม่)'
          : 'ข้อมูลเรียลไทม์ — โหลดข้อมูลรถทั้งหมดใหม่แล้ว เนื่องจากข้อมูลบางส่วนขาดหาย';
      case 'reconnecting':
        return `ขาดการเชื่อมต่อ: ${this.problem(s.problem)} กำลังเชื่อมต่อใหม่ (ครั้งที่ ${s.attempt}) · ${newest}`;
      case 'http-fallback':
        return s.behind
          ? `กำลังดึงข้อมูลที่ขาดไปผ่านช่องทางสำรอง (HTTP) · ${newest}`
          : `รับข้อมูลผ่านช่องทางสำรอง (HTTP) ระหว่างเชื่อมต่อใหม่ (ครั้งที่ ${s.attempt}) · ${newest}`;
      case 'auth-failed':
        return `เข้าสู่ระบบไม่สำเร็จ: ${this.refusal(s.refusal)}${s.retrying ? ' — กำลังลองใหม่ด้วยโทเค็นใหม่' : ''} · ${newest}`;
      case 'stopped':
        return `ตัดการเชื่อมต่อแล้ว · ${newest}`;
    }
  },
  refusal(r) {
    switch (r) {
      case HandshakeRefusal.AuthRequired:
        return 'ไม่พบโทเค็น';
      case HandshakeRefusal.InvalidToken:
        return 'โทเค็นไม่ถูกต้อง';
      case HandshakeRefusal.TokenExpired:
        return 'โทเค็นหมดอายุแล้ว';
      case HandshakeRefusal.Forbidden:
        return 'บัญชีนี้ไม่มีสิทธิ์ดูตำแหน่งรถ';
    }
  },
  signinRefused(r) {
    return `เซิร์ฟเวอร์ไม่รับโทเค็นนี้ (${this.refusal(r)}) กรุณาวางโทเค็นใหม่`;
  },
  problem(p) {
    switch (p) {
      case 'unreachable':
        return 'ติดต่อเซิร์ฟเวอร์ไม่ได้';
      case 'cut':
        return 'การเชื่อมต่อกับเซิร์ฟเวอร์ถูกตัด';
      case 'timeout':
        return 'เซิร์ฟเวอร์ไม่ตอบสนอง';
      case 'server-error':
        return 'เซิร์ฟเวอร์ขัดข้อง';
      case 'refused':
        return 'เซิร์ฟเวอร์ปฏิเสธคำขอ';
      case 'closed-by-server':
        return 'เซิร์ฟเวอร์ปิดการเชื่อมต่อ';
    }
  },
};

const TEXTS: Record<Lang, Texts> = { th, en };

export function texts(lang: Lang): Texts {
  return TEXTS[lang];
}
