//! Every decoder and validator that client bytes reach (payloads, batches,
//! statuses, sync queries, times, tokens): no panic, and accepted values keep
//! the server's invariants. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wecare_server::fuzzing::payload(data);
});
