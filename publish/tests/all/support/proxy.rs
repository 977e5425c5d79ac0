//! A proxy in front of the registry that records every request and can answer
//! some with errors or drop them, to prove retries, blob reuse and cache hits.

use std::sync::{Arc, Mutex};

use super::http::{Handler, Reply, Request, Response, Server};

/// One request the proxy saw and what it did with it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub body_len: usize,
    /// The status sent back (0 when the connection was dropped).
    pub status: u16,
}

impl Seen {
    pub fn is_blob_upload(&self) -> bool {
        self.target.contains("/blobs/uploads/")
            && matches!(self.method.as_str(), "PATCH" | "PUT" | "POST")
    }

    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && self.target.contains("/blobs/sha256:")
    }
}

/// A predicate over the requests seen so far.
pub type Condition = Box<dyn Fn(&[Seen]) -> bool + Send>;

pub enum Action {
    Forward,
    Respond(u16),
    Drop,
    /// Hold the request until the log satisfies `until` (an ordering between
    /// concurrent requests, not a delay), then do what `then` says.
    Hold {
        until: Condition,
        then: Box<dyn FnOnce() -> Action + Send>,
    },
}

/// Decides per request; sees the request and how many came before it.
pub type Rule = Box<dyn FnMut(&Request, usize) -> Action + Send>;

pub struct Proxy {
    pub port: u16,
    log: Arc<Mutex<Vec<Seen>>>,
    _server: Server,
}

impl Proxy {
    pub fn forward_to(upstream_port: u16) -> Proxy {
        Proxy::with_rule(upstream_port, Box::new(|_, _| Action::Forward))
    }

    pub fn with_rule(upstream_port: u16, rule: Rule) -> Proxy {
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let rule = Arc::new(Mutex::new(rule));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let upstream = format!("http://127.0.0.1:{upstream_port}");
        let handler_log = log.clone();
        let handler: Handler = Arc::new(move |request: Request| {
            let log = handler_log.clone();
            let rule = rule.clone();
            let client = client.clone();
            let upstream = upstream.clone();
            Box::pin(async move {
                let action = {
                    let count = log.lock().unwrap().len();
                    (rule.lock().unwrap())(&request, count)
                };
                let mut seen = Seen {
                    method: request.method.clone(),
                    target: request.target.clone(),
                    body_len: request.body.len(),
                    status: 0,
                };
                let action = match action {
                    Action::Hold { until, then } => {
                        while !until(&log.lock().unwrap()) {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                        then()
                    }
                    other => other,
                };
                let reply = match action {
                    Action::Hold { .. } => Reply::Send(Response::new(500, "nested hold")),
                    Action::Drop => Reply::Drop,
                    Action::Respond(status) => {
                        seen.status = status;
                        Reply::Send(Response::new(status, "injected failure"))
                    }
                    Action::Forward => match forward(&client, &upstream, &request).await {
                        Some(response) => {
                            seen.status = response.status;
                            Reply::Send(response)
                        }
                        // The registry is gone: behave like a dead upstream.
                        None => Reply::Drop,
                    },
                };
                log.lock().unwrap().push(seen);
                reply
            })
        });
        let server = Server::start(handler);
        Proxy {
            port: server.port,
            log,
            _server: server,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn forward(client: &reqwest::Client, upstream: &str, request: &Request) -> Option<Response> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).ok()?;
    let mut builder = client.request(method, format!("{upstream}{}", request.target));
    for (k, v) in &request.headers {
        if !matches!(
            k.to_ascii_lowercase().as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            builder = builder.header(k, v);
        }
    }
    let upstream_response = builder.body(request.body.clone()).send().await.ok()?;
    let status = upstream_response.status().as_u16();
    let is_head = request.method == "HEAD";
    let mut headers = Vec::new();
    for (k, v) in upstream_response.headers() {
        let name = k.as_str().to_ascii_lowercase();
        if matches!(name.as_str(), "connection" | "transfer-encoding")
            || (name == "content-length" && !is_head)
        {
            continue;
        }
        headers.push((
            k.as_str().to_string(),
            v.to_str().unwrap_or_default().to_string(),
        ));
    }
    let body = upstream_response.bytes().await.ok()?.to_vec();
    Some(Response {
        status,
        headers,
        body,
    })
}
