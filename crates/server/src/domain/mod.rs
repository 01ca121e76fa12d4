//! Transport-agnostic rules: who a token is, what a valid payload is, how
//! the fleet's latest state moves, and the events the stream carries.

pub(crate) mod auth;
pub(crate) mod event;
pub(crate) mod fields;
pub(crate) mod fleet;
pub(crate) mod rate;
pub(crate) mod revocation;
pub(crate) mod validate;
