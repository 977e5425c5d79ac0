//! One plugin on one worker: [`Harness`] as the short form of
//! [`crate::Envoy`]. Its traffic runs through the same filter manager,
//! with the VM as the chain's one position.

use crate::driver::Harness;
use crate::error::HarnessError;
use crate::manager::{self, Slot, Streams};
use crate::model::{
    ConnectionExchange, DownstreamRequest, Exchange, Outcome, Properties, UpstreamResponse,
};

impl Harness {
    /// Runs one request/response exchange through the filter until the
    /// stream completes, is reset, or stalls. Virtual time advances only
    /// while the stream waits for callouts or timers.
    ///
    /// A trap is not an `Err`: it is reported in [`Outcome::trap`] and the
    /// stream gets Envoy's fail-closed 503 (or passes through with `fail_open`).
    pub fn exchange(&mut self, exchange: &Exchange) -> Result<Outcome, HarnessError> {
        let slots = [self.own_slot()];
        let mut streams = Streams::with_spare(std::mem::take(&mut self.spare));
        let filters = std::slice::from_mut(self);
        let mut outcomes = manager::exchange(filters, &slots, &mut streams, exchange);
        let outcome = outcomes.pop().unwrap_or_default();
        streams.keep_outcome_list(outcomes);
        self.spare = streams.take_spare();
        Ok(outcome)
    }

    /// Runs one whole TCP connection through the filter as a network
    /// filter: the client's chunks, the upstream's, then each side's FIN,
    /// until it closes. [`Outcome::connection`] says what each side got.
    pub fn connection(&mut self, exchange: &ConnectionExchange) -> Result<Outcome, HarnessError> {
        let slots = [self.own_slot()];
        let filters = std::slice::from_mut(self);
        let mut outcomes =
            manager::connection_exchange(filters, &slots, &mut Streams::default(), exchange);
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// Shorthand for [`Harness::exchange`] without per-exchange properties.
    pub fn send(
        &mut self,
        request: &DownstreamRequest,
        upstream: &UpstreamResponse,
    ) -> Result<Outcome, HarnessError> {
        self.exchange(&Exchange {
            request: request.clone(),
            upstream: upstream.clone(),
            properties: Properties::new(),
        })
    }

    /// Advances virtual time by `ms` with no stream: fires `on_tick`s, delivers
    /// callout answers and queue notifications due in that window.
    pub fn advance(&mut self, ms: u64) -> Result<Outcome, HarnessError> {
        let slots = [self.own_slot()];
        let filters = std::slice::from_mut(self);
        let mut outcomes = manager::advance(filters, &slots, &mut Streams::default(), ms);
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// This VM's one chain position (no allocation on the per-request path).
    fn own_slot(&self) -> Slot {
        Slot {
            vm: 0,
            root: self.vm.host_ref().root_context_id,
        }
    }
}
