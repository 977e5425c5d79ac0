//! What each step of a case does, and the checks that a case's steps make
//! sense together (named streams opened before they are used, once).

use std::collections::BTreeSet;

use super::format::{RequestSpec, Step};

/// The one thing a step does.
pub enum Action<'a> {
    /// A request run to its end (other live streams move meanwhile).
    Exchange(&'a RequestSpec),
    /// Virtual time passes with no new stream.
    Advance(u64),
    /// A named stream opens and runs until it waits.
    Open {
        name: &'a str,
        request: &'a RequestSpec,
        hold_upstream: bool,
    },
    /// A held stream gets its upstream answer.
    Respond { name: &'a str },
    /// Run until the named stream ends; expectations are on that stream.
    Finish { name: &'a str },
}

impl Step {
    /// The step's action; an error names what is missing or contradictory.
    pub fn action(&self) -> Result<Action<'_>, String> {
        let named = [&self.open, &self.respond, &self.finish]
            .iter()
            .filter(|n| n.is_some())
            .count();
        if named > 1 {
            return Err("a step does one of `open`, `respond`, `finish`".into());
        }
        if self.hold_upstream && self.open.is_none() {
            return Err("`hold_upstream` belongs to an `open` step".into());
        }
        if self.worker.is_some() && self.request.is_none() {
            return Err(
                "`worker` names who takes a `request` (or an `open`); `advance_ms` moves every worker, and a named stream stays on the worker that opened it"
                    .into(),
            );
        }
        let extra = |what: &str| Err(format!("`{what}` does not go with this step's action"));
        if let Some(name) = &self.open {
            let Some(request) = &self.request else {
                return Err(format!("`open: {name}` needs a `request`"));
            };
            if self.advance_ms.is_some() {
                return extra("advance_ms");
            }
            return Ok(Action::Open {
                name,
                request,
                hold_upstream: self.hold_upstream,
            });
        }
        if let Some(name) = &self.respond {
            if self.request.is_some() {
                return extra("request");
            }
            if self.advance_ms.is_some() {
                return extra("advance_ms");
            }
            return Ok(Action::Respond { name });
        }
        if let Some(name) = &self.finish {
            if self.request.is_some() {
                return extra("request");
            }
            if self.upstream.is_some() {
                return extra("upstream");
            }
            if self.advance_ms.is_some() {
                return extra("advance_ms");
            }
            return Ok(Action::Finish { name });
        }
        match (&self.request, self.advance_ms) {
            (Some(_), Some(_)) => {
                Err("a step is either a `request` or an `advance_ms`, not both".into())
            }
            (None, None) => {
                Err("needs `request`, `advance_ms`, `open`, `respond` or `finish`".into())
            }
            (None, Some(_)) if self.upstream.is_some() => {
                Err("`upstream` needs a `request`".into())
            }
            (Some(request), None) => Ok(Action::Exchange(request)),
            (None, Some(ms)) => Ok(Action::Advance(ms)),
        }
    }
}

/// Each step's action is well-formed, and named streams are opened once
/// before any step uses them and finished at most once.
pub fn validate(steps: &[Step]) -> Result<(), String> {
    let mut open = BTreeSet::new();
    let mut finished = BTreeSet::new();
    for (i, step) in steps.iter().enumerate() {
        let at = |e: String| format!("step {}: {e}", i + 1);
        match step.action().map_err(at)? {
            Action::Open { name, .. } if !open.insert(name) => {
                return Err(at(format!("stream {name:?} is opened twice")));
            }
            Action::Respond { name } | Action::Finish { name } if !open.contains(name) => {
                return Err(at(format!(
                    "stream {name:?} is not opened by an earlier step (`open: {name}`)"
                )));
            }
            Action::Finish { name } if !finished.insert(name) => {
                return Err(at(format!("stream {name:?} is finished twice")));
            }
            _ => {}
        }
    }
    Ok(())
}
