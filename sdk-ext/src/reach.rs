//! Which of a stream's header maps and bodies the filter may touch now.
//!
//! Envoy gives a filter each header map and body only while the hook that
//! delivered it runs, or while the filter keeps that direction paused from
//! it; once the hook returns Continue (or the filter resumes the direction)
//! reads and writes answer BAD_ARGUMENT, on which the raw SDK panics and
//! the VM traps. sdk-ext tracks the same rule per stream so that its
//! helpers never make such a call: out of reach, reads give nothing,
//! writes do nothing, and each field logs one warning saying why.

use std::cell::Cell;
use std::rc::Rc;

pub(crate) use proxy_abi::HttpField as Field;

/// The fields on_log may read (Envoy's access-log copies).
fn readable_in_log(field: Field) -> bool {
    matches!(
        field,
        Field::RequestHeaders | Field::ResponseHeaders | Field::ResponseTrailers
    )
}

#[derive(Default)]
struct State {
    live: Cell<u8>,
    /// Trailers offered on demand that do not exist until written.
    write_only: Cell<u8>,
    warned: Cell<u8>,
    in_log: Cell<bool>,
}

/// A stream's reach, shared by its [`crate::Http`] handle, its header
/// handles and any delayed resume scheduled for it.
#[derive(Clone, Default)]
pub(crate) struct Reach(Rc<State>);

impl Reach {
    pub(crate) fn grant(&self, field: Field) {
        self.0.live.set(self.0.live.get() | field.bit());
    }

    /// Trailers the last body hook of a message without them may create
    /// (Envoy's addDecodedTrailers): writable, not readable until written.
    pub(crate) fn grant_on_demand(&self, field: Field) {
        if !self.can_write(field) {
            self.grant(field);
            self.0.write_only.set(self.0.write_only.get() | field.bit());
        }
    }

    /// A write reached the field: trailers offered on demand now exist.
    pub(crate) fn created(&self, field: Field) {
        self.0
            .write_only
            .set(self.0.write_only.get() & !field.bit());
    }

    pub(crate) fn withdraw(&self, field: Field) {
        self.0.live.set(self.0.live.get() & !field.bit());
        self.created(field);
    }

    /// The filter resumed a direction: Envoy's `continueStream` drops the
    /// request side's fields whichever direction is resumed, the response
    /// side's only when the response is resumed (the harness does too).
    pub(crate) fn resumed(&self, request: bool) {
        for field in Field::withdrawn_by_continue(request) {
            self.withdraw(field);
        }
    }

    /// on_log runs (true) or has returned (false).
    pub(crate) fn set_in_log(&self, in_log: bool) {
        if in_log {
            self.0.live.set(0);
        }
        self.0.in_log.set(in_log);
    }

    pub(crate) fn can_read(&self, field: Field) -> bool {
        let readable_live = self.can_write(field) && self.0.write_only.get() & field.bit() == 0;
        readable_live || (self.0.in_log.get() && readable_in_log(field))
    }

    pub(crate) fn can_write(&self, field: Field) -> bool {
        self.0.live.get() & field.bit() != 0
    }

    /// Logs, once per field and stream, why `field` was not touched.
    pub(crate) fn warn_out_of_reach(&self, field: Field, plugin: &str) {
        let warned = self.0.warned.get();
        if warned & field.bit() != 0 {
            return;
        }
        self.0.warned.set(warned | field.bit());
        log::warn!(
            "{plugin}: the {what} are out of reach here: Envoy gives a filter the {what} \
             only in {hook} (and while it stays paused from there), and answers BAD_ARGUMENT \
             afterwards. Nothing was read or changed. Keep what you need for later in the \
             plugin's stream state (Plugin::KEEP_REQUEST_HEADERS keeps request headers), or \
             return Action::Pause from {hook} to hold them.",
            what = field.describe(),
            hook = field.callback(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_follows_hooks_resumes_and_the_log_phase() {
        let reach = Reach::default();
        assert!(!reach.can_read(Field::RequestHeaders));
        reach.grant(Field::RequestHeaders);
        reach.grant(Field::ResponseHeaders);
        assert!(reach.can_write(Field::RequestHeaders));
        // Resuming the response drops both sides; resuming the request only its own.
        reach.resumed(true);
        assert!(!reach.can_read(Field::RequestHeaders));
        assert!(reach.can_write(Field::ResponseHeaders));
        reach.resumed(false);
        assert!(!reach.can_read(Field::ResponseHeaders));
        // on_log reads the access-log copies but writes nothing; no request trailers.
        reach.set_in_log(true);
        assert!(reach.can_read(Field::RequestHeaders));
        assert!(!reach.can_write(Field::RequestHeaders));
        assert!(!reach.can_read(Field::RequestTrailers));
        assert!(!reach.can_read(Field::ResponseBody));
        reach.set_in_log(false);
        assert!(!reach.can_read(Field::ResponseHeaders));
        // Trailers on demand: written first, then readable.
        reach.grant_on_demand(Field::RequestTrailers);
        assert!(!reach.can_read(Field::RequestTrailers));
        assert!(reach.can_write(Field::RequestTrailers));
        reach.created(Field::RequestTrailers);
        assert!(reach.can_read(Field::RequestTrailers));
    }
}
