//! The storage conformance suite: every [`EventLog`] implementation must
//! pass it (`run_all` with a factory that opens a log on a folder).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use wecare_proto::{DriverId, MessageId, Seq};

use super::{Appended, EventLog};
use crate::clock::now_ms;
use crate::domain::event::{NewEvent, Sender};
use crate::domain::validate::Fix;

fn fix(id: &str, recorded_at: i64) -> Fix {
    Fix {
        id: Some(MessageId::parse(id).unwrap()),
        lat: 13.7,
        lng: 100.5,
        recorded_at,
        adjusted: false,
        status: None,
        accuracy: None,
        heading: None,
        speed: None,
    }
}

/// A fix of `driver` with client id `id` (13.7, 100.5).
pub(crate) fn loc(driver: &str, id: &str, recorded_at: i64, received: i64) -> NewEvent {
    NewEvent::location(Sender::bare(driver), fix(id, recorded_at), received)
}

fn seqs(out: &[Appended]) -> Vec<(bool, u64)> {
    out.iter()
        .map(|a| match a {
            Appended::Stored(e) => (true, e.seq.0),
            Appended::Duplicate(s) => (false, s.0),
            Appended::Unchanged => (false, 0),
        })
        .collect()
}

/// How a backend takes several writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writers {
    /// One log per store (the embedded store): two writers are two callers
    /// of one log at once.
    OneLog,
    /// Any number of logs on one store (one per node).
    ManyLogs,
}

/// Runs every conformance check against logs made by `open` (the same
/// path opens the same store again).
pub(crate) async fn run_all<L, F, Fut>(open: F, writers: Writers)
where
    L: EventLog,
    F: Fn(&Path) -> Fut,
    Fut: Future<Output = L>,
{
    append_dedups_and_numbers_without_holes(&open).await;
    seq_and_stream_id_survive_reopen(&open).await;
    read_after_pages_in_order_and_reports_gaps(&open).await;
    a_prune_out_of_seq_order_is_reported_as_a_gap(&open).await;
    snapshot_and_track(&open).await;
    presence_that_changes_nothing_takes_no_seq(&open).await;
    cursors_survive_reopen(&open).await;
    two_writers_at_once(&open, writers).await;
}

async fn presence_that_changes_nothing_takes_no_seq<L: EventLog, Fut: Future<Output = L>>(
    open: &impl Fn(&Path) -> Fut,
) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let t = now_ms();
    let d = || DriverId::new("p");
    let out = log.append(vec![NewEvent::online(d(), t), NewEvent::online(d(), t), loc("p", "1", t, t)]).await.unwrap();
    assert!(matches!(out[1], Appended::Unchanged), "already online: nothing stored");
    assert_eq!(seqs(&out[2..]), vec![(true, 2)], "no seq was used by the dropped event");
    let out = log.append(vec![NewEvent::offline(d(), 0, t), NewEvent::offline(d(), 0, t)]).await.unwrap();
    assert!(matches!(out[0], Appended::Stored(_)) && matches!(out[1], Appended::Unchanged));
    let snap = log.snapshot().await.unwrap();
    assert!(!snap.drivers.iter().find(|(id, _)| id.as_str() == "p").unwrap().1.online);
}

async fn cursors_survive_reopen<L: EventLog, Fut: Future<Output = L>>(open: &impl Fn(&Path) -> Fut) {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path()).await;
        assert_eq!(log.cursor("forward").await.unwrap(), None);
        log.set_cursor("forward", Seq(7)).await.unwrap();
        log.set_cursor("forward", Seq(9)).await.unwrap();
    }
    let log = open(dir.path()).await;
    assert_eq!(log.cursor("forward").await.unwrap(), Some(Seq(9)));
}

/// Two writers append at once, each batches of fresh events plus events
/// the other also sends: every event is stored once, `seq` has no holes,
/// each batch got consecutive numbers, and reading gives commit order.
async fn two_writers_at_once<L: EventLog, Fut: Future<Output = L>>(open: &impl Fn(&Path) -> Fut, writers: Writers) {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(open(dir.path()).await);
    let b: Option<Arc<L>> = match writers {
        Writers::OneLog => None,
        Writers::ManyLogs => Some(Arc::new(open(dir.path()).await)),
    };
    let t = now_ms();
    let write = |log: Arc<L>, me: &'static str| async move {
        let mut stored = Vec::new();
        for round in 0..20 {
            let mut batch: Vec<NewEvent> = (0..10).map(|i| loc(me, &format!("{round}-{i}"), t, t)).collect();
            // Both writers also send these: only one may store each.
            batch.push(loc("shared", &format!("s{round}"), t, t));
            let out = log.append(batch).await.unwrap();
            let fresh: Vec<u64> = out[..10]
                .iter()
                .map(|o| match o {
                    Appended::Stored(e) => e.seq.0,
                    other => panic!("fresh event not stored: {other:?}"),
                })
                .collect();
            assert!(fresh.windows(2).all(|w| w[1] == w[0] + 1), "one batch, consecutive seqs: {fresh:?}");
            stored.extend(out);
        }
        stored
    };
    let other = b.clone().unwrap_or_else(|| Arc::clone(&a));
    let (x, y) = tokio::join!(write(Arc::clone(&a), "a"), write(other, "b"));
    let mut all: Vec<u64> = x
        .iter()
        .chain(&y)
        .filter_map(|o| match o {
            Appended::Stored(e) => Some(e.seq.0),
            _ => None,
        })
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=420).collect::<Vec<u64>>(), "400 fresh + 20 shared, once each, no holes");
    let page = a.read_after(Seq::ZERO, 1000).await.unwrap();
    let read: Vec<u64> = page.events.iter().map(|e| e.seq.0).collect();
    assert_eq!(read, (1..=420).collect::<Vec<u64>>());
    assert_eq!(page.head, Seq(420));
}

async fn append_dedups_and_numbers_without_holes<L: EventLog, Fut: Future<Output = L>>(open: &impl Fn(&Path) -> Fut) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let t = now_ms();
    let out = log.append(vec![loc("a", "1", t, t), loc("a", "1", t, t), loc("b", "1", t, t)]).await.unwrap();
    assert_eq!(seqs(&out), vec![(true, 1), (false, 1), (true, 2)], "same id in one batch is stored once");
    let out = log.append(vec![loc("a", "1", t, t), loc("a", "2", t, t)]).await.unwrap();
    assert_eq!(seqs(&out), vec![(false, 1), (true, 3)]);
    assert_eq!(log.head(), Seq(3));
    // A duplicate changes nothing, even when it says something else.
    let mut again = loc("b", "1", t + 5, t + 5);
    if let crate::domain::event::Body::Location(f) = &mut again.body {
        f.lat = 1.0;
    }
    assert_eq!(seqs(&log.append(vec![again]).await.unwrap()), vec![(false, 2)]);
    let snap = log.snapshot().await.unwrap();
    let b = snap.drivers.iter().find(|(d, _)| d.as_str() == "b").map(|(_, s)| s.position);
    assert_eq!(b.flatten().map(|p| (p.lat, p.recorded_at)), Some((13.7, t)), "the marker stays where the first put it");
    assert_eq!((log.head(), snap.seq), (Seq(3), Seq(3)));
}

async fn seq_and_stream_id_survive_reopen<L: EventLog, Fut: Future<Output = L>>(open: &impl Fn(&Path) -> Fut) {
    let dir = tempfile::tempdir().unwrap();
    let t = now_ms();
    let (stream_id, log) = {
        let log = open(dir.path()).await;
        log.append(vec![loc("a", "1", t, t), loc("a", "2", t, t)]).await.unwrap();
        (log.stream_id().to_string(), log)
    };
    drop(log);
    let log = open(dir.path()).await;
    assert_eq!(log.stream_id(), stream_id);
    assert_eq!(log.head(), Seq(2));
    let out = log.append(vec![loc("a", "2", t, t), loc("a", "3", t, t)]).await.unwrap();
    assert_eq!(seqs(&out), vec![(false, 2), (true, 3)], "dedup and seq continue after reopen");
    // Retention prunes every event; seq still never goes back.
    assert_eq!(log.prune(t + 1).await.unwrap(), 3);
    let out = log.append(vec![loc("a", "4", t, t)]).await.unwrap();
    assert_eq!(seqs(&out), vec![(true, 4)]);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(open(other.path()).await.stream_id(), stream_id, "a new store is a new stream");
}

async fn read_after_pages_in_order_and_reports_gaps<L: EventLog, Fut: Future<Output = L>>(
    open: &impl Fn(&Path) -> Fut,
) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let t = now_ms();
    let old: Vec<NewEvent> = (0..5).map(|i| loc("a", &format!("old{i}"), t - 10_000, t - 10_000)).collect();
    log.append(old).await.unwrap();
    let new: Vec<NewEvent> = (0..5).map(|i| loc("a", &format!("new{i}"), t, t)).collect();
    log.append(new).await.unwrap();
    let page = log.read_after(Seq(2), 4).await.unwrap();
    let got: Vec<u64> = page.events.iter().map(|e| e.seq.0).collect();
    assert_eq!(got, vec![3, 4, 5, 6]);
    assert!(!page.gap);
    assert_eq!(log.prune(t - 5_000).await.unwrap(), 5);
    let page = log.read_after(Seq(2), 100).await.unwrap();
    assert!(page.gap, "events 3..=5 were pruned");
    assert_eq!(page.events.first().map(|e| e.seq.0), Some(6));
    let page = log.read_after(Seq(5), 100).await.unwrap();
    assert!(!page.gap, "nothing after 5 was pruned");
    let page = log.read_after(Seq(10), 100).await.unwrap();
    assert!(page.events.is_empty() && !page.gap);
}

/// `received_at` is stamped on arrival and `seq` at the commit, so within a
/// group commit a later `seq` can carry an earlier arrival. Retention then
/// removes a row above one it keeps: a reader from below must be told.
async fn a_prune_out_of_seq_order_is_reported_as_a_gap<L: EventLog, Fut: Future<Output = L>>(
    open: &impl Fn(&Path) -> Fut,
) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let t = now_ms();
    let out = log
        .append(vec![loc("a", "kept", t, t), loc("b", "pruned", t - 10_000, t - 10_000), loc("a", "after", t, t)])
        .await
        .unwrap();
    assert_eq!(seqs(&out), vec![(true, 1), (true, 2), (true, 3)]);
    assert_eq!(log.prune(t - 5_000).await.unwrap(), 1);
    let page = log.read_after(Seq(0), 100).await.unwrap();
    let got: Vec<u64> = page.events.iter().map(|e| e.seq.0).collect();
    assert_eq!(got, vec![1, 3]);
    assert!(page.gap, "event 2 was pruned: a reader from 0 has a gap");
    let page = log.read_after(Seq(2), 100).await.unwrap();
    assert!(!page.gap, "nothing after 2 was pruned");
    drop(log);
    let log = open(dir.path()).await;
    assert!(log.read_after(Seq(1), 100).await.unwrap().gap, "the gap is known after a reopen");
}

async fn snapshot_and_track<L: EventLog, Fut: Future<Output = L>>(open: &impl Fn(&Path) -> Fut) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()).await);
    let t = now_ms();
    log.append(vec![loc("a", "1", t - 100, t), loc("a", "2", t - 300, t), loc("a", "3", t - 200, t)]).await.unwrap();
    let snap = log.snapshot().await.unwrap();
    assert_eq!(snap.seq, Seq(3));
    let (_, state) = snap.drivers.iter().find(|(d, _)| d.as_str() == "a").unwrap();
    assert_eq!(state.position.unwrap().recorded_at, t - 100, "late fixes do not move the latest position");
    let track = log.track(DriverId::new("a"), 0, i64::MAX, 100).await.unwrap();
    let order: Vec<u64> = track.iter().map(|e| e.seq.0).collect();
    assert_eq!(order, vec![2, 3, 1], "track is ordered by recordedAt");
    let window = log.track(DriverId::new("a"), t - 250, t - 150, 100).await.unwrap();
    assert_eq!(window.len(), 1);
}
