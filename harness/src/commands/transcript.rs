//! The `harness run` transcript, like `curl -v`. Everything the guest
//! controls (log lines, header names and values, bodies, local reply
//! details, metric and cluster names, trap and panic texts) is printed with
//! its control characters escaped, so a filter cannot forge transcript lines
//! or drive the terminal.

use std::io::Write;
use std::path::Path;

use harness::printable::{callout_result, escape_bytes, escape_controls, metric_kind};
use harness::{Outcome, StreamEnd, TraceArg, TraceEvent};

/// The reason phrase curl would show after the status code.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Guest bytes as one transcript line's worth of text.
fn text(b: &[u8]) -> String {
    escape_bytes(b)
}

pub fn print_logs(out: &mut dyn Write, title: &str, outcome: &Outcome) -> std::io::Result<()> {
    if outcome.logs.is_empty() {
        return Ok(());
    }
    writeln!(out, "* {title}:")?;
    // A trap is printed once, in its own block (`print_trap`): its log
    // line and the guest's panic line are left out here.
    let shown_in_trap = |message: &str| {
        outcome.trap.as_ref().is_some_and(|t| {
            message.starts_with("[harness] VM failed: trap in")
                || t.panic_message.as_deref() == Some(message)
        })
    };
    for l in outcome.logs.iter().filter(|l| !shown_in_trap(&l.message)) {
        writeln!(
            out,
            "*   [{}] {}",
            l.level.name(),
            escape_controls(&l.message)
        )?;
    }
    Ok(())
}

fn print_trace(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    for e in &outcome.trace {
        match e {
            TraceEvent::Callback {
                name,
                args,
                result,
                at_ms,
            } => {
                let r = result.map_or("trap".to_string(), |v| v.to_string());
                writeln!(out, "# {at_ms:>6}ms {name}({}) -> {r}", join(args))?;
            }
            TraceEvent::Hostcall {
                name,
                args,
                status_name,
                decoded,
                returned,
                ..
            } => {
                // Proxy-Wasm calls by what they meant; WASI ones as passed.
                let shown = if name.starts_with("proxy_") {
                    named(decoded)
                } else {
                    join(args)
                };
                write!(out, "#            {name}({shown}) = {status_name}")?;
                if !returned.is_empty() {
                    write!(out, " -> {}", named(returned))?;
                }
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

/// `name: value, ...`, guest text escaped once more should a value carry
/// a control character.
fn named(args: &[TraceArg]) -> String {
    args.iter()
        .map(|a| format!("{}: {}", a.name, escape_controls(&a.value)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn join(args: &[u64]) -> String {
    args.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one `harness run` did, in the order it happened.
pub struct Transcript<'a> {
    pub module: &'a Path,
    pub startup: &'a Outcome,
    /// The request's exchange (none for a timer-only run).
    pub exchange: Option<&'a Outcome>,
    /// `--advance`: how far, and what happened meanwhile.
    pub advance: Option<(u64, &'a Outcome)>,
    pub trace: bool,
}

/// Prints the transcript: start-up, the exchange, then the clock advance.
pub fn print(out: &mut dyn Write, t: &Transcript<'_>) -> std::io::Result<()> {
    writeln!(
        out,
        "* filter {} started (root context 1)",
        t.module.display()
    )?;
    print_logs(out, "start-up logs", t.startup)?;
    if t.trace {
        print_trace(out, t.startup)?;
    }
    if let Some(outcome) = t.exchange {
        if t.trace {
            print_trace(out, outcome)?;
        }
        print_exchange(out, outcome)?;
        print_effects(out, "filter logs", outcome)?;
    }
    if let Some((ms, outcome)) = t.advance {
        writeln!(out, "* virtual clock advanced {ms}ms with no stream")?;
        if t.trace {
            print_trace(out, outcome)?;
        }
        print_effects(out, "filter logs while the clock advanced", outcome)?;
    }
    Ok(())
}

fn print_exchange(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    match &outcome.upstream_request {
        Some(req) => {
            let h = &req.headers;
            let method = h
                .get(":method")
                .map(|v| text(v.as_bytes()))
                .unwrap_or_default();
            let path = h
                .get(":path")
                .map(|v| text(v.as_bytes()))
                .unwrap_or_default();
            writeln!(out, "* request as the upstream received it:")?;
            writeln!(out, "> {method} {path} HTTP/1.1")?;
            if let Some(a) = h.get(":authority") {
                writeln!(out, "> host: {}", text(a.as_bytes()))?;
            }
            for (k, v) in h.iter().filter(|(k, _)| !k.starts_with(b":")) {
                writeln!(out, "> {}: {}", text(k), text(v))?;
            }
            writeln!(out, ">")?;
            if !req.body.is_empty() {
                writeln!(out, "{}", text(req.body.as_bytes()))?;
            }
        }
        None => writeln!(out, "* the request never reached the upstream")?,
    }
    if let Some(reply) = &outcome.local_reply {
        writeln!(
            out,
            "* local reply {} from the {} (details \"{}\")",
            reply.status,
            reply.source,
            escape_controls(&reply.details)
        )?;
    }
    match &outcome.response {
        Some(resp) => {
            writeln!(out, "* response as the client received it:")?;
            writeln!(out, "< HTTP/1.1 {} {}", resp.status, reason(resp.status))?;
            for (k, v) in resp
                .message
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(b":"))
            {
                writeln!(out, "< {}: {}", text(k), text(v))?;
            }
            writeln!(out, "<")?;
            if !resp.message.body.is_empty() {
                writeln!(out, "{}", text(resp.message.body.as_bytes()))?;
            }
            if resp.reset {
                writeln!(out, "* the stream was reset")?;
            }
        }
        None => writeln!(out, "* no response reached the client")?,
    }
    match &outcome.end {
        StreamEnd::Stalled { reason } => {
            writeln!(out, "* STREAM STALLED: {}", escape_controls(reason))?;
        }
        StreamEnd::Reset => writeln!(out, "* stream reset")?,
        _ => {}
    }
    Ok(())
}

/// Logs, trap, metrics and callouts of one step.
pub fn print_effects(out: &mut dyn Write, title: &str, outcome: &Outcome) -> std::io::Result<()> {
    print_logs(out, title, outcome)?;
    print_trap(out, outcome)?;
    print_metrics_and_calls(out, outcome)
}

/// The step's trap, if any: its text, backtrace lines and the guest's panic.
pub fn print_trap(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    if let Some(t) = &outcome.trap {
        // The trap text's own lines (cause, then backtrace frames) stay
        // lines, each behind the transcript's `*` prefix.
        let mut lines = t.trap.lines();
        writeln!(
            out,
            "* TRAP in {} (context {}): {}",
            t.callback,
            t.context_id,
            escape_controls(lines.next().unwrap_or_default())
        )?;
        for line in lines {
            writeln!(out, "*   {}", escape_controls(line))?;
        }
        if let Some(p) = &t.panic_message {
            writeln!(out, "*   guest panic: {}", escape_controls(p))?;
        }
    }
    Ok(())
}

/// Every metric after the step, and its callouts.
pub fn print_metrics_and_calls(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    for m in &outcome.metrics {
        writeln!(
            out,
            "* metric {} ({}) = {}",
            escape_controls(&m.name),
            metric_kind(m.kind),
            m.value
        )?;
    }
    for c in &outcome.http_calls {
        writeln!(
            out,
            "* http_call #{} to {} -> {}",
            c.token,
            escape_controls(&c.cluster),
            callout_result(&c.result)
        )?;
    }
    Ok(())
}
