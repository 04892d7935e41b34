//! One stream of interrupts (Ctrl-C / SIGTERM) fanned out to every walk running at that moment:
//! an experiment runs many sessions at once, and each must see the signal as a lone run does
//! (the first stops it and tears down, the second leaves what is up). The count is kept, so the
//! caller knows what the n-th interrupt means for what has not started yet.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

#[derive(Debug, Default)]
struct Hub {
    count: u32,
    next: u64,
    subscribers: Vec<(u64, mpsc::UnboundedSender<()>)>,
}

/// The fan-out; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interrupts(Arc<Mutex<Hub>>);

/// A walk's own channel of interrupts, unsubscribed when dropped.
pub(crate) struct Subscription {
    pub rx: mpsc::UnboundedReceiver<()>,
    key: u64,
    hub: Interrupts,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.with(|h| h.subscribers.retain(|(k, _)| *k != self.key));
    }
}

impl Interrupts {
    fn with<T>(&self, f: impl FnOnce(&mut Hub) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A channel that receives every interrupt from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let key = self.with(|h| {
            h.next += 1;
            h.subscribers.push((h.next, tx));
            h.next
        });
        Subscription { rx, key, hub: self.clone() }
    }

    /// Delivers an interrupt to every subscriber; returns how many there have been.
    pub(crate) fn interrupt(&self) -> u32 {
        self.with(|h| {
            h.count += 1;
            for (_, tx) in &h.subscribers {
                let _ = tx.send(());
            }
            h.count
        })
    }

    /// How many interrupts there have been.
    pub(crate) fn count(&self) -> u32 {
        self.with(|h| h.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_at_the_moment_gets_it_and_a_dropped_one_is_forgotten() {
        let hub = Interrupts::default();
        let mut a = hub.subscribe();
        let b = hub.subscribe();
        drop(b);
        assert_eq!(hub.interrupt(), 1);
        let mut c = hub.subscribe();
        assert_eq!(hub.interrupt(), 2);
        assert_eq!((a.rx.try_recv(), a.rx.try_recv()), (Ok(()), Ok(())));
        assert_eq!(c.rx.try_recv(), Ok(()));
        assert!(c.rx.try_recv().is_err(), "c subscribed after the first");
        assert_eq!(hub.count(), 2);
        assert_eq!(hub.with(|h| h.subscribers.len()), 2);
    }
}
