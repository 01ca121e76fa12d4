//! The web client's copy of the wire vocabulary, generated from this crate:
//! `web/src/client/wire.gen.ts` must equal [`render`]'s output, or the test
//! below fails — so a code, status or event name changed here cannot drift
//! from the TypeScript that the compiler then checks the web client against.
//!
//! The payload interfaces (`web/src/client/payloads.gen.ts`) are made the
//! same way from [`crate::payload`]'s types, by ts-rs (a test-only
//! dependency: nothing of it is in the binaries).
//!
//! Regenerate: `WECARE_WRITE_TS=1 cargo test -p wecare-proto typescript`.

use std::fmt::Write;

use crate::{DriverStatus, ErrorCode, NAMESPACE, event};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/src/client/wire.gen.ts");
const PAYLOADS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/src/client/payloads.gen.ts");

/// `(TypeScript name, wire name)` of the events each side sends.
const SERVER_EVENTS: [(&str, &str); 8] = [
    ("LocationUpdated", event::LOCATION_UPDATED),
    ("DriverStatusUpdated", event::DRIVER_STATUS_UPDATED),
    ("DriverPresence", event::DRIVER_PRESENCE),
    ("DriversSnapshot", event::DRIVERS_SNAPSHOT),
    ("SyncComplete", event::SYNC_COMPLETE),
    ("AuthExpiring", event::AUTH_EXPIRING),
    ("AuthExpired", event::AUTH_EXPIRED),
    ("Error", event::ERROR),
];
const CLIENT_EVENTS: [(&str, &str); 5] = [
    ("AuthRefresh", event::AUTH_REFRESH),
    ("EventsSync", event::EVENTS_SYNC),
    ("LocationUpdate", event::LOCATION_UPDATE),
    ("LocationBatch", event::LOCATION_BATCH),
    ("DriverStatus", event::DRIVER_STATUS),
];

fn object(out: &mut String, doc: &str, name: &str, entries: impl IntoIterator<Item = (String, String)>) {
    let _ = writeln!(out, "\n/** {doc} */\nexport const {name} = {{");
    for (key, value) in entries {
        let _ = writeln!(out, "  {key}: '{value}',");
    }
    let _ = writeln!(out, "}} as const;");
}

fn pairs(list: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
}

/// The file's text.
pub(crate) fn render() -> String {
    let mut out = String::from(
        "// Generated from crates/proto (src/typescript.rs) — do not edit.\n\
         // Regenerate: WECARE_WRITE_TS=1 cargo test -p wecare-proto typescript\n",
    );
    let _ =
        writeln!(out, "\n/** Socket.io namespace of the location stream. */\nexport const NAMESPACE = '{NAMESPACE}';");
    let _ =
        writeln!(out, "\n/** Most fixes in one `location:batch`. */\nexport const MAX_BATCH = {};", event::MAX_BATCH);
    object(&mut out, "Events the server sends.", "ServerEvent", pairs(&SERVER_EVENTS));
    object(&mut out, "Events a client sends.", "ClientEvent", pairs(&CLIENT_EVENTS));
    let codes = ErrorCode::ALL.map(|c| (format!("{c:?}"), c.as_str().to_owned()));
    object(&mut out, "The stable error codes of acks, `error` events and REST bodies.", "ErrorCode", codes);
    out.push_str("export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];\n");
    let retryable: Vec<String> =
        ErrorCode::ALL.into_iter().filter(|c| c.is_retryable()).map(|c| format!("ErrorCode.{c:?}")).collect();
    let _ = writeln!(
        out,
        "\n/** Codes worth sending the same message again for (later). */\nexport const RETRYABLE_CODES: readonly ErrorCode[] = [{}];",
        retryable.join(", ")
    );
    let refusals =
        ErrorCode::ALL.into_iter().filter_map(|c| c.handshake_message().map(|m| (format!("{c:?}"), m.to_owned())));
    object(
        &mut out,
        "Stable `connect_error` messages (contract §2); clients rely on these only.",
        "HandshakeRefusal",
        refusals,
    );
    out.push_str("export type HandshakeRefusal = (typeof HandshakeRefusal)[keyof typeof HandshakeRefusal];\n");
    let statuses: Vec<String> = DriverStatus::ALL.iter().map(|s| format!("'{}'", s.as_str())).collect();
    let _ = writeln!(
        out,
        "\n/** Driver statuses, upper case as the server stores and broadcasts them. */\nexport const DRIVER_STATUSES = [{}] as const;\nexport type DriverStatus = (typeof DRIVER_STATUSES)[number];",
        statuses.join(", ")
    );
    out
}

/// The payload interfaces' file: every type of [`crate::payload`], in
/// dependency order, exported.
pub(crate) fn render_payloads() -> String {
    use ts_rs::TS;

    use crate::payload::*;
    let cfg = ts_rs::Config::default();
    let decls = [
        OkStatus::decl(&cfg),
        ErrorStatus::decl(&cfg),
        LocationUpdated::<String>::decl(&cfg),
        DriverStatusUpdated::decl(&cfg),
        DriverPresence::decl(&cfg),
        SnapshotDriver::decl(&cfg),
        DriversSnapshot::decl(&cfg),
        SyncComplete::decl(&cfg),
        AuthExpiring::decl(&cfg),
        AuthExpired::decl(&cfg),
        WireError::decl(&cfg),
        ErrorAck::<String>::decl(&cfg),
        LocationOkAck::decl(&cfg),
        LocationResult::<String>::decl(&cfg),
        BatchAck::<String>::decl(&cfg),
        RefusedBatch::<String>::decl(&cfg),
        RefreshOk::decl(&cfg),
        StreamEvent::decl(&cfg),
        EventsPage::<Vec<StreamEvent>>::decl(&cfg),
        Track::<Vec<LocationUpdated>>::decl(&cfg),
        LocationFix::decl(&cfg),
        Notified::decl(&cfg),
        RevokedBody::decl(&cfg),
        LoggedOut::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from crates/proto (src/payload.rs, by src/typescript.rs) — do not edit.\n\
         // Regenerate: WECARE_WRITE_TS=1 cargo test -p wecare-proto typescript\n\n\
         import type { DriverStatus, ErrorCode } from './wire.gen';\n\n\
         /** ISO-8601 UTC with milliseconds, as every time the server sends. */\n\
         export type IsoTime = string;\n",
    );
    for decl in decls {
        let _ = writeln!(out, "\nexport {decl}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_clients_wire_vocabulary_is_generated_from_this_crate() {
        let want = render();
        if std::env::var_os("WECARE_WRITE_TS").is_some() {
            std::fs::write(FILE, &want).expect("writing wire.gen.ts");
            return;
        }
        let have = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            have == want,
            "web/src/client/wire.gen.ts is not what crates/proto says: run \
             `WECARE_WRITE_TS=1 cargo test -p wecare-proto typescript` and commit the file"
        );
    }

    #[test]
    fn the_web_clients_payload_interfaces_are_generated_from_this_crate() {
        let want = render_payloads();
        if std::env::var_os("WECARE_WRITE_TS").is_some() {
            std::fs::write(PAYLOADS_FILE, &want).expect("writing payloads.gen.ts");
            return;
        }
        let have = std::fs::read_to_string(PAYLOADS_FILE).unwrap_or_default();
        assert!(
            have == want,
            "web/src/client/payloads.gen.ts is not what crates/proto says: run \
             `WECARE_WRITE_TS=1 cargo test -p wecare-proto typescript` and commit the file"
        );
    }
}
