//! What the project's two command-line tools share: `wecare-rt` (serve,
//! tokens, watch, bench, backup, migrate) and `wecare-sim` (a simulated
//! fleet, optionally through injected network faults). The fault proxy is a
//! test tool: it lives in `wecare-sim` only, never in the binary that serves.

pub mod progress;
pub mod target;
pub mod tokens;
