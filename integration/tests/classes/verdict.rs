//! What a row's trigger did to a shim, in the words the table uses, with the figures.

use std::fmt;

/// What a user would notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answered within its bound, every byte and event delivered, nothing left.
    Fine,
    /// A request or a client did not return within its bound.
    Hang,
    /// Bytes, exits or events a reader could have taken never arrived.
    Loss,
    /// Events arrived in an order containerd does not expect (an init's exit before its
    /// execs', an exit before its start).
    Disorder,
    /// Something stayed after its process or container was gone: descriptors, processes,
    /// zombies, runc state, a shim.
    Leak,
    /// The container stopped in a write because nobody drained its output.
    Blocked,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Fine => "fine",
            Verdict::Hang => "hang",
            Verdict::Loss => "loss",
            Verdict::Disorder => "disorder",
            Verdict::Leak => "leak",
            Verdict::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A trigger's result: the first problem's verdict (or fine), every problem, and the figures.
#[derive(Debug, Default)]
pub struct Measured {
    pub problems: Vec<(Verdict, String)>,
    pub figures: Vec<String>,
}

impl Measured {
    pub fn verdict(&self) -> Verdict {
        self.problems
            .first()
            .map(|(v, _)| *v)
            .unwrap_or(Verdict::Fine)
    }

    /// Records a problem when `bad`.
    pub fn check(&mut self, bad: bool, verdict: Verdict, what: impl Into<String>) {
        if bad {
            self.problems.push((verdict, what.into()));
        }
    }

    pub fn figure(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("    {what}");
        self.figures.push(what);
    }
}

impl fmt::Display for Measured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict())?;
        for (v, p) in &self.problems {
            write!(f, "\n  {v}: {p}")?;
        }
        for fig in &self.figures {
            write!(f, "\n  - {fig}")?;
        }
        Ok(())
    }
}
