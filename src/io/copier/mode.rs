//! The copier's modes and the moves between them, as pure functions.
//!
//! What the copier does with each chunk it reads depends on its [`Mode`] (and on how full its
//! queue is) and on nothing else; every change of mode is [`next`] applied to an [`Event`].

use super::QUEUE_CAP;

/// How the copier treats the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// runc is running: queue up to [`QUEUE_CAP`], discard past it, never wait for the sink.
    RuncRunning,
    /// runc has returned and the sink takes bytes: queue them, or splice when nothing is queued.
    Normal,
    /// runc has returned and the queue is full: the reader waits for the sink (stock flow
    /// control: a slow reader slows the process).
    Backpressure,
    /// The FIFO's reader went away (EPIPE): discard until a reader opens it again, then go
    /// back to the mode that `runc_running` says.
    ReaderDetached { runc_running: bool },
    /// The sink failed for good, was never opened, or the process was deleted: discard.
    Dead,
}

/// What happens to a copier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// runc has returned (`end_runc_phase`).
    RuncReturned,
    /// The reader has a chunk the queue has no room for.
    QueueFull,
    /// The writer took a chunk off the queue.
    SpaceFreed,
    /// The sink's reader went away (EPIPE); a FIFO may be opened again.
    ReaderGone,
    /// A reader opened the FIFO again.
    ReaderBack,
    /// The sink cannot be opened or failed for good.
    SinkFailed,
    /// The process is being deleted: nobody will read the sink again.
    Abandoned,
}

/// The mode after `event` in `mode`.
pub fn next(mode: Mode, event: Event) -> Mode {
    use Event::*;
    use Mode::*;
    match (mode, event) {
        (Dead, _) | (_, SinkFailed | Abandoned) => Dead,
        (RuncRunning, RuncReturned) => Normal,
        (RuncRunning, ReaderGone) => ReaderDetached { runc_running: true },
        (RuncRunning, QueueFull | SpaceFreed | ReaderBack) => RuncRunning,
        (Normal, QueueFull) => Backpressure,
        (Backpressure, SpaceFreed) => Normal,
        (Normal | Backpressure, ReaderGone) => ReaderDetached {
            runc_running: false,
        },
        (Normal, RuncReturned | SpaceFreed | ReaderBack)
        | (Backpressure, RuncReturned | QueueFull | ReaderBack) => mode,
        (ReaderDetached { runc_running }, ReaderBack) => {
            if runc_running {
                RuncRunning
            } else {
                Normal
            }
        }
        (ReaderDetached { .. }, RuncReturned) => ReaderDetached {
            runc_running: false,
        },
        (ReaderDetached { .. }, QueueFull | SpaceFreed | ReaderGone) => mode,
    }
}

impl Mode {
    /// Whether what is read is thrown away (and what is queued dropped on entering the mode).
    pub fn discards(self) -> bool {
        matches!(self, Mode::ReaderDetached { .. } | Mode::Dead)
    }

    /// Whether the reader may splice straight into a pipe sink (once nothing is queued).
    pub fn may_splice(self) -> bool {
        matches!(self, Mode::Normal | Mode::Backpressure)
    }
}

/// What the reader does with a chunk of `n` bytes when `queued` bytes wait for the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Queue,
    /// Thrown away: the sink is gone.
    Discard,
    /// Thrown away: runc runs and the sink does not keep up (worth a warning).
    DiscardOverCap,
    /// Held back until the writer frees space.
    Wait,
}

pub fn admit(mode: Mode, queued: usize, n: usize) -> Admit {
    match mode {
        // A sink nobody reads never blocks the process: read and discard.
        Mode::Dead | Mode::ReaderDetached { .. } => Admit::Discard,
        // One chunk is always taken, however large.
        _ if queued == 0 || queued + n <= QUEUE_CAP => Admit::Queue,
        // The drain invariant (DESIGN.md 3): while runc runs, a full queue never stops the
        // reading, or runc and `runc init` could block on the pipe while the shim waits for runc.
        Mode::RuncRunning => Admit::DiscardOverCap,
        Mode::Normal | Mode::Backpressure => Admit::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::{Event::*, Mode::*, *};

    const DETACHED_RUNC: Mode = ReaderDetached { runc_running: true };
    const DETACHED: Mode = ReaderDetached {
        runc_running: false,
    };

    #[test]
    fn every_mode_and_event() {
        let events = [
            RuncReturned,
            QueueFull,
            SpaceFreed,
            ReaderGone,
            ReaderBack,
            SinkFailed,
            Abandoned,
        ];
        // One row per mode, one column per event, in the order of `events`.
        #[rustfmt::skip]
        let table: [(Mode, [Mode; 7]); 6] = [
            (RuncRunning,
             [Normal, RuncRunning, RuncRunning, DETACHED_RUNC, RuncRunning, Dead, Dead]),
            (Normal,
             [Normal, Backpressure, Normal, DETACHED, Normal, Dead, Dead]),
            (Backpressure,
             [Backpressure, Backpressure, Normal, DETACHED, Backpressure, Dead, Dead]),
            (DETACHED_RUNC,
             [DETACHED, DETACHED_RUNC, DETACHED_RUNC, DETACHED_RUNC, RuncRunning, Dead, Dead]),
            (DETACHED,
             [DETACHED, DETACHED, DETACHED, DETACHED, Normal, Dead, Dead]),
            (Dead,
             [Dead, Dead, Dead, Dead, Dead, Dead, Dead]),
        ];
        for (mode, row) in table {
            for (event, want) in events.into_iter().zip(row) {
                assert_eq!(next(mode, event), want, "{mode:?} on {event:?}");
            }
        }
    }

    #[test]
    fn what_the_reader_does_with_a_chunk() {
        let full = QUEUE_CAP;
        let cases = [
            (RuncRunning, 0, Admit::Queue, Admit::Queue),
            (RuncRunning, full, Admit::Queue, Admit::DiscardOverCap),
            (Normal, 0, Admit::Queue, Admit::Queue),
            (Normal, full, Admit::Queue, Admit::Wait),
            (Backpressure, full, Admit::Queue, Admit::Wait),
            (DETACHED_RUNC, 0, Admit::Discard, Admit::Discard),
            (DETACHED, 0, Admit::Discard, Admit::Discard),
            (Dead, 0, Admit::Discard, Admit::Discard),
        ];
        for (mode, queued, empty_chunk, big_chunk) in cases {
            // `queued` bytes already wait; a chunk that fits, then one that does not.
            let room = QUEUE_CAP - queued;
            assert_eq!(admit(mode, queued, room), empty_chunk, "{mode:?} {queued}");
            assert_eq!(
                admit(mode, queued, room + 1),
                big_chunk,
                "{mode:?} {queued}"
            );
        }
    }

    #[test]
    fn only_a_live_sink_after_runc_is_spliced_into_and_only_a_gone_one_discards() {
        let all = [
            RuncRunning,
            Normal,
            Backpressure,
            DETACHED_RUNC,
            DETACHED,
            Dead,
        ];
        let spliced: Vec<_> = all.into_iter().filter(|m| m.may_splice()).collect();
        assert_eq!(spliced, [Normal, Backpressure]);
        let discarding: Vec<_> = all.into_iter().filter(|m| m.discards()).collect();
        assert_eq!(discarding, [DETACHED_RUNC, DETACHED, Dead]);
    }
}
