//! `--faults`: which network faults the simulator injects through a
//! [`FaultProxy`] between its drivers and the server, and when.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wecare_client::testing::FaultProxy;

use super::route::Rng;

/// One `--faults` item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fault {
    /// `drop:P`: every second, with probability P, every connection is cut
    /// (alternately cleanly and in the middle of a frame).
    Drop(f64),
    /// `block-ws:SECS`: websocket upgrades are refused (and open sockets cut)
    /// for SECS seconds; the SDK drains over HTTP meanwhile.
    BlockWs(Duration),
    /// `kill-link:SECS`: the link is a black hole for SECS seconds.
    KillLink(Duration),
    /// `delay:MS`: every chunk is held back MS milliseconds, all run long.
    Delay(Duration),
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, value) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected KIND:VALUE"))?;
        let number: f64 = value.trim().parse().map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
        if !(number.is_finite() && number >= 0.0) {
            return Err(format!("{s:?}: the value must be a non-negative number"));
        }
        let secs = || Duration::from_secs_f64(number.min(86_400.0));
        match kind.trim() {
            "drop" if number <= 1.0 => Ok(Fault::Drop(number)),
            "drop" => Err(format!("{s:?}: drop takes a probability in [0, 1]")),
            "block-ws" => Ok(Fault::BlockWs(secs())),
            "kill-link" => Ok(Fault::KillLink(secs())),
            "delay" => Ok(Fault::Delay(Duration::from_millis(number.min(60_000.0) as u64))),
            other => Err(format!("{other:?}: unknown fault (drop, block-ws, kill-link, delay)")),
        }
    }
}

/// When the first outage window opens.
const FIRST_WINDOW_AT: Duration = Duration::from_secs(1);

/// Runs `faults` against `proxy` until `stop`: `drop` and `delay` all run
/// long; the `block-ws` and `kill-link` windows one after another, from 1 s
/// in, in the order given. Everything is healed on return.
pub(crate) async fn inject(proxy: &FaultProxy, faults: &[Fault], seed: u64, stop: CancellationToken) {
    let mut rng = Rng::new(seed ^ 0xFA17);
    let start = Instant::now();
    let delay = faults.iter().find_map(|f| match f {
        Fault::Delay(d) => Some(*d),
        _ => None,
    });
    let drop_p = faults.iter().find_map(|f| match f {
        Fault::Drop(p) => Some(*p),
        _ => None,
    });
    // The outage windows as a timeline of (when, fault to open | None = heal).
    let mut timeline = Vec::new();
    let mut at = FIRST_WINDOW_AT;
    for fault in faults {
        if let Fault::BlockWs(d) | Fault::KillLink(d) = fault {
            timeline.push((start + at, Some(*fault)));
            at += *d;
            timeline.push((start + at, None));
        }
    }
    let heal = || {
        proxy.heal();
        if let Some(d) = delay {
            proxy.set_delay(d);
        }
    };
    heal();
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut next = timeline.into_iter().peekable();
    let mut cuts = 0u64;
    let never = start + Duration::from_secs(86_400 * 365);
    loop {
        let edge = next.peek().map_or(never, |(when, _)| *when);
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick(), if drop_p.is_some() => {
                if rng.unit() < drop_p.unwrap_or(0.0) {
                    cuts += 1;
                    if cuts.is_multiple_of(2) { proxy.cut_mid_frame() } else { proxy.cut_all() }
                }
            }
            () = tokio::time::sleep_until(edge) => match next.next() {
                Some((_, Some(Fault::BlockWs(_)))) => {
                    proxy.refuse_websockets();
                    proxy.cut_all();
                }
                Some((_, Some(_))) => proxy.black_hole(),
                Some((_, None)) => heal(),
                None => {}
            },
        }
    }
    proxy.heal();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!("drop:0.5".parse(), Ok(Fault::Drop(0.5)));
        assert_eq!("block-ws:3".parse(), Ok(Fault::BlockWs(Duration::from_secs(3))));
        assert_eq!("kill-link:1.5".parse(), Ok(Fault::KillLink(Duration::from_millis(1500))));
        assert_eq!("delay:20".parse(), Ok(Fault::Delay(Duration::from_millis(20))));
        for bad in ["drop", "drop:2", "drop:-1", "nap:3", "block-ws:x", "kill-link:inf"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
