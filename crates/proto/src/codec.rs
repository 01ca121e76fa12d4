//! The Engine.IO v4 / Socket.IO v5 codec of our wire, in one place: text
//! frames only (binary packets are refused), one namespace, acks. The SDK's
//! client speaks through it today; it is written to be the server's too
//! (issue 18: our own transport), and it is fuzzed (`fuzz/`, target
//! `codec`), since every byte it reads comes from the other side.

pub mod engine;
pub mod packet;
