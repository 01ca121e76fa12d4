// What the page should say, per language: the tests' own expectations,
// written independently of src/app/i18n.ts (a test that read the page's
// dictionary would pass whatever it said).
export const WORDS = {
  th: {
    heading: 'แผนที่ศูนย์สั่งการ',
    live: /^ข้อมูลเรียลไทม์$/,
    httpFallback: /ช่องทางสำรอง \(HTTP\)/,
    reloaded: /โหลดข้อมูลรถทั้งหมดใหม่แล้ว/,
    onTrip: 'ออกปฏิบัติงาน',
    online: 'ออนไลน์',
    filterOnTrip: 'ออกปฏิบัติ',
    notReported: 'ยังไม่รายงานสถานะ',
    lost: /^ขาดการเชื่อมต่อ: (ติดต่อเซิร์ฟเวอร์ไม่ได้|การเชื่อมต่อกับเซิร์ฟเวอร์ถูกตัด) /,
    attempt: /ครั้งที่ (\d+)/,
    newestAge: /ข้อมูลล่าสุดบนจอ (\d+) วินาทีที่แล้ว/,
    showAll: 'แสดงทั้งหมด',
    signOut: 'ออกจากระบบ',
  },
  en: {
    heading: 'Map Command',
    live: /^Live$/,
    httpFallback: /backup connection \(HTTP\)/,
    reloaded: /reloaded the fleet/,
    onTrip: 'On trip',
    online: 'online',
    filterOnTrip: 'on trip',
    notReported: 'Not reported',
    lost: /^Connection lost: (the server cannot be reached|the connection to the server was cut)\. /,
    attempt: /attempt (\d+)/,
    newestAge: /newest data on screen: (\d+) s ago/,
    showAll: 'Show all',
    signOut: 'Sign out',
  },
};

/** Raw browser / socket.io error strings an officer must never see. */
export const RAW_ERRORS = /Failed to fetch|NetworkError|TypeError|transport close|transport error|xhr poll error|websocket error|ping timeout|ERR_[A-Z_]+|HTTP \d{3}/;
