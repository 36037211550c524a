//! Work the explorer runs on a thread of its own so the screen keeps drawing (an export's
//! figures, the plan search): it reports over a channel, checks a stop flag, and is stopped and
//! waited for when dropped, since the process may exit next and a thread killed between its
//! writes would leave half a file or folder behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// What the job said since the last look.
pub(crate) enum Next<M> {
    Message(M),
    /// Nothing yet.
    Empty,
    /// The thread ended without its last word: it panicked.
    Ended,
}

pub(crate) struct Background<M> {
    messages: Receiver<M>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The job's side: where it reports, and whether it was asked to stop.
pub(crate) struct Link<M> {
    pub tx: Sender<M>,
    stop: Arc<AtomicBool>,
}

impl<M> Link<M> {
    pub fn send(&self, message: M) {
        // The explorer stops listening only when it drops the job, which then stops it.
        let _ = self.tx.send(message);
    }

    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl<M: Send + 'static> Background<M> {
    /// Runs `work` on a thread named `name`. A thread that cannot start is reported as the
    /// first message, `failed(why)`.
    pub fn spawn(
        name: &str,
        failed: impl FnOnce(String) -> M,
        work: impl FnOnce(Link<M>) + Send + 'static,
    ) -> Background<M> {
        let (tx, messages) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let link = Link {
            tx: tx.clone(),
            stop: Arc::clone(&stop),
        };
        let thread = match std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(link))
        {
            Ok(thread) => Some(thread),
            Err(e) => {
                let _ = tx.send(failed(format!("cannot start a thread: {e}")));
                None
            }
        };
        Background {
            messages,
            stop,
            thread,
        }
    }

    pub fn next(&self) -> Next<M> {
        match self.messages.try_recv() {
            Ok(m) => Next::Message(m),
            Err(mpsc::TryRecvError::Empty) => Next::Empty,
            Err(mpsc::TryRecvError::Disconnected) => Next::Ended,
        }
    }

    pub fn cancel(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl<M> Drop for Background<M> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reports_stops_when_asked_and_is_waited_for_when_dropped() {
        let finished = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&finished);
        let job = Background::spawn("test-job", Err, move |link: Link<Result<u32, String>>| {
            link.send(Ok(1));
            while !link.should_stop() {
                std::thread::yield_now();
            }
            seen.store(true, Ordering::Relaxed);
        });
        let first = loop {
            match job.next() {
                Next::Message(m) => break m,
                Next::Empty => std::thread::yield_now(),
                Next::Ended => panic!("the job ended without a word"),
            }
        };
        assert_eq!(first, Ok(1));
        assert!(matches!(job.next(), Next::Empty));
        drop(job);
        assert!(
            finished.load(Ordering::Relaxed),
            "dropping waits for the stopped job"
        );

        let panicked = Background::spawn("test-panic", |e| e, |_: Link<String>| panic!("boom"));
        let end = loop {
            match panicked.next() {
                Next::Empty => std::thread::yield_now(),
                other => break other,
            }
        };
        assert!(matches!(end, Next::Ended));
    }
}
