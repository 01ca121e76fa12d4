//! The server a load-generating command (`bench`, `simulate`) talks to: its
//! URL is checked to be on this machine unless the user says otherwise.

use anyhow::{Context, ensure};

/// The host part of `http://host[:port][/...]`, without IPv6 brackets.
pub(crate) fn url_host(url: &str) -> anyhow::Result<&str> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .with_context(|| format!("--url {url:?} has no scheme (expected http://HOST:PORT)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    ensure!(!host.is_empty(), "--url {url:?} has no host");
    Ok(host)
}

pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
