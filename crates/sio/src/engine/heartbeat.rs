//! The server's side of the Engine.IO heartbeat, and the connect timeout:
//! when the session's task must next wake, and whether the session is
//! still alive when it does.

use std::time::Duration;

use tokio::time::Instant;

use super::session::Session;
use crate::outbox::Frame;
use crate::socket::DisconnectReason;

#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    /// When the last ping went out, while its pong is awaited.
    ping_sent: Option<Instant>,
    next: Instant,
    /// Until a socket joins the namespace.
    connect_by: Option<Instant>,
}

impl Heartbeat {
    pub(crate) fn new(interval: Duration, timeout: Duration, connect_timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        Self { interval, timeout, ping_sent: None, next: now + interval, connect_by: connect_timeout.map(|t| now + t) }
    }

    /// When the task must call [`Heartbeat::tick`].
    pub(crate) fn wake_at(&self) -> Instant {
        self.connect_by.map_or(self.next, |c| c.min(self.next))
    }

    /// Pings, or checks the pong of the last ping, or the connect timeout.
    pub(crate) fn tick<D>(&mut self, session: &Session<D>) -> Result<(), DisconnectReason> {
        let now = Instant::now();
        if let Some(by) = self.connect_by {
            if session.joined() {
                self.connect_by = None;
            } else if now >= by {
                return Err(DisconnectReason::ConnectTimeout);
            }
        }
        if now < self.next {
            return Ok(());
        }
        match self.ping_sent.take() {
            None => {
                // A pong from before this ping does not answer it.
                let _ = session.take_pong();
                session.outbox.push_control(Frame::from_static("2"));
                self.ping_sent = Some(now);
                self.next = now + self.timeout;
            }
            Some(sent) => {
                if !session.take_pong() {
                    return Err(DisconnectReason::PingTimeout);
                }
                self.next = (sent + self.interval).max(now);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::session::TransportKind;

    fn session() -> std::sync::Arc<Session<()>> {
        let ticket = crate::engine::pending::PendingSessions::new(1).admit().expect("a place");
        Session::new("", TransportKind::Polling, 8, ticket)
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_is_sent_each_interval_and_an_unanswered_one_ends_the_session() {
        let s = session();
        let mut hb = Heartbeat::new(Duration::from_secs(25), Duration::from_secs(20), None);
        assert_eq!(hb.wake_at() - Instant::now(), Duration::from_secs(25));
        tokio::time::sleep_until(hb.wake_at()).await;
        hb.tick(&s).unwrap();
        let mut out = Vec::new();
        s.outbox.take(&mut out);
        assert_eq!(out.iter().map(|f| f.as_str()).collect::<Vec<_>>(), ["2"]);
        // Answered: the next ping is due an interval after the last one.
        s.pong_received();
        tokio::time::sleep_until(hb.wake_at()).await;
        hb.tick(&s).unwrap();
        assert_eq!(hb.wake_at() - Instant::now(), Duration::from_secs(5));
        tokio::time::sleep_until(hb.wake_at()).await;
        hb.tick(&s).unwrap();
        // Not answered: dead after the timeout.
        tokio::time::sleep_until(hb.wake_at()).await;
        assert_eq!(hb.tick(&s), Err(DisconnectReason::PingTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pong_from_before_the_ping_does_not_answer_it() {
        let s = session();
        let mut hb = Heartbeat::new(Duration::from_secs(1), Duration::from_secs(1), None);
        s.pong_received();
        tokio::time::sleep_until(hb.wake_at()).await;
        hb.tick(&s).unwrap();
        tokio::time::sleep_until(hb.wake_at()).await;
        assert_eq!(hb.tick(&s), Err(DisconnectReason::PingTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_does_not_join_in_time_ends() {
        let s = session();
        let mut hb = Heartbeat::new(Duration::from_secs(25), Duration::from_secs(20), Some(Duration::from_secs(3)));
        assert_eq!(hb.wake_at() - Instant::now(), Duration::from_secs(3));
        tokio::time::sleep_until(hb.wake_at()).await;
        assert_eq!(hb.tick(&s), Err(DisconnectReason::ConnectTimeout));
    }
}
