//! Sub-millisecond sleeps.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds deadlines up, which makes
//! every timed event 0.5–1.5 ms late. That is too coarse for the simulator (the ground truth the
//! load generator is checked against) and for open-loop pacing. This module runs one thread that
//! holds the pending deadlines in a heap and sleeps on a condition variable until the earliest
//! (a futex wait: tens of microseconds of slack), then wakes the waiting tasks.
//!
//! Only timing-critical waits use it: the simulator's steps and tokens and the load generator's
//! dispatcher. Everything else uses tokio's timer.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Condvar, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Instant,
};

struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
    fired: Arc<AtomicBool>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.deadline, self.seq) == (o.deadline, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(o.deadline, o.seq))
    }
}

struct Service {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    cv: Condvar,
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<&'static Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let s: &'static Service =
            Box::leak(Box::new(Service { heap: Mutex::new((BinaryHeap::new(), 0)), cv: Condvar::new() }));
        std::thread::Builder::new()
            .name("benchflow-timer".into())
            .spawn(move || run(s))
            .expect("failed to start the timer thread");
        s
    })
}

fn run(s: &'static Service) {
    let mut guard = s.heap.lock().expect("timer lock");
    loop {
        let now = Instant::now();
        match guard.0.peek() {
            None => guard = s.cv.wait(guard).expect("timer lock"),
            Some(Reverse(e)) if e.deadline <= now => {
                let Reverse(e) = guard.0.pop().expect("peeked");
                e.fired.store(true, Ordering::Release);
                e.waker.wake();
            }
            Some(Reverse(e)) => {
                let wait = e.deadline - now;
                guard = s.cv.wait_timeout(guard, wait).expect("timer lock").0;
            }
        }
    }
}

/// Resolves at `deadline`, typically within tens of microseconds.
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, fired: None }
}

/// The future of [`sleep_until`].
pub(crate) struct Sleep {
    deadline: Instant,
    fired: Option<Arc<AtomicBool>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline || self.fired.as_ref().is_some_and(|f| f.load(Ordering::Acquire)) {
            return Poll::Ready(());
        }
        if self.fired.is_none() {
            let fired = Arc::new(AtomicBool::new(false));
            let s = service();
            let mut g = s.heap.lock().expect("timer lock");
            g.1 += 1;
            let seq = g.1;
            let earliest = g.0.peek().is_none_or(|Reverse(e)| self.deadline < e.deadline);
            g.0.push(Reverse(Entry {
                deadline: self.deadline,
                seq,
                waker: cx.waker().clone(),
                fired: Arc::clone(&fired),
            }));
            drop(g);
            if earliest {
                s.cv.notify_one();
            }
            self.fired = Some(fired);
        }
        // Spurious polls (e.g. inside select!) keep the registered waker; tokio wakers of the
        // same task are equivalent, so the one registered first still wakes this task.
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_in_order_and_close_to_the_deadline() {
        // Deadlines 100 ms apart, registered out of order: each fires at or after its deadline and
        // before the next one, so they fire in deadline order. The bound is loose on purpose (a
        // busy 2-core machine is late by tens of ms); the precision is measured by the benches.
        let start = Instant::now();
        let woke = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in [3u64, 1, 2] {
            let d = start + Duration::from_millis(20 + 100 * n);
            let woke = woke.clone();
            tasks.push(tokio::spawn(async move {
                sleep_until(d).await;
                let now = Instant::now();
                woke.lock().unwrap().push((n, now));
                assert!(now >= d, "woke {:?} early", d - now);
                now - d
            }));
        }
        for h in tasks {
            let l = h.await.unwrap();
            assert!(l < Duration::from_millis(90), "late by {l:?}");
        }
        let mut woke = woke.lock().unwrap().clone();
        woke.sort_by_key(|(_, at)| *at);
        assert_eq!(woke.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3], "woken out of order");
        // A past deadline is ready at once.
        sleep_until(start).await;
    }
}
