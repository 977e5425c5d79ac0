//! The connection manager's `access_log`: stdout, stderr and file loggers
//! with their `log_format` (or a file logger's older `format` /
//! `json_format` fields), parsed once. Anything else a logger can carry
//! (an access-log `filter`, gRPC or OpenTelemetry loggers, extension
//! formatters) is refused with its path, never skipped.

use std::sync::{Arc, Mutex};

use super::node::{Node, Notes, Parsed};
use crate::commands::serve::access_log::{
    AccessLogs, Captured, DEFAULT_FORMAT, Format, Logger, Sink, parse, parse_object,
};

const STDOUT: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";
const FILE: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

/// The loggers of one connection manager (none: no access log at all).
pub(super) fn access_logs(hcm: &Node, notes: &mut Notes) -> Parsed<AccessLogs> {
    let mut logs = AccessLogs::default();
    for entry in hcm.list_at("access_log")? {
        entry.fields(&["name", "typed_config", "filter"], &[], notes)?;
        if let Some(filter) = entry.get("filter") {
            return Err(filter.error(
                "access-log filters are not served; harness serve logs every stream: remove it",
            ));
        }
        let typed = entry.need("typed_config")?;
        let (sink, format) = match typed.need("@type")?.str()? {
            kind @ (STDOUT | STDERR) => {
                typed.fields(&["log_format"], &[], notes)?;
                let sink = if kind == STDOUT {
                    Sink::Stdout
                } else {
                    Sink::Stderr
                };
                (sink, log_format(&typed, &mut logs.captured, notes)?)
            }
            FILE => {
                typed.fields(&["path", "log_format", "format", "json_format"], &[], notes)?;
                let path_node = typed.need("path")?;
                let path = path_node.str()?.to_string();
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| {
                        path_node.error(&format!("cannot open '{path}' to append: {e}"))
                    })?;
                let format = file_format(&typed, &mut logs.captured, notes)?;
                (Sink::File(Mutex::new(file)), format)
            }
            other => {
                return Err(typed.error(&format!(
                    "the access logger {other} is not served; harness serve writes stdout, \
                     stderr and file access logs"
                )));
            }
        };
        logs.loggers.push(Logger {
            sink: Arc::new(sink),
            format,
        });
    }
    Ok(logs)
}

/// A file logger's format: `log_format`, or the older `format` (text) and
/// `json_format` fields.
fn file_format(typed: &Node, captured: &mut Captured, notes: &mut Notes) -> Parsed<Format> {
    if let Some(text) = typed.get("format") {
        return text_format(&text, captured);
    }
    if let Some(json) = typed.get("json_format") {
        return json_format(&json, captured);
    }
    log_format(typed, captured, notes)
}

/// `log_format` (a SubstitutionFormatString), Envoy's default without one.
fn log_format(typed: &Node, captured: &mut Captured, notes: &mut Notes) -> Parsed<Format> {
    let Some(format) = typed.get("log_format") else {
        return parse(DEFAULT_FORMAT, captured)
            .map(Format::Text)
            .map_err(|e| typed.error(&e));
    };
    format.fields(
        &[
            "text_format",
            "text_format_source",
            "json_format",
            "omit_empty_values",
            "formatters",
        ],
        &["content_type", "json_format_options"],
        notes,
    )?;
    if let Some(omit) = format.get("omit_empty_values")
        && omit.bool()?
    {
        return Err(
            omit.error("is not served; harness serve writes '-' (or null) for a missing value")
        );
    }
    if let Some(formatters) = format.get("formatters")
        && !formatters.list()?.is_empty()
    {
        return Err(formatters.error("extension formatters are not served"));
    }
    if let Some(text) = format.get("text_format") {
        return text_format(&text, captured);
    }
    if let Some(source) = format.get("text_format_source") {
        source.fields(&["inline_string"], &["filename", "inline_bytes"], notes)?;
        let Some(text) = source.get("inline_string") else {
            return Err(source.error("give the format as inline_string"));
        };
        return text_format(&text, captured);
    }
    if let Some(json) = format.get("json_format") {
        return json_format(&json, captured);
    }
    Err(format.error("give text_format_source, text_format or json_format"))
}

fn text_format(node: &Node, captured: &mut Captured) -> Parsed<Format> {
    parse(node.str()?, captured)
        .map(Format::Text)
        .map_err(|e| node.error(&e))
}

fn json_format(node: &Node, captured: &mut Captured) -> Parsed<Format> {
    let value = serde_json::to_value(node.value).map_err(|e| node.error(&e.to_string()))?;
    let serde_json::Value::Object(object) = value else {
        return Err(node.error("must be a mapping of keys to format strings"));
    };
    parse_object(&object, captured)
        .map(Format::Json)
        .map_err(|e| node.error(&e))
}
