//! A token server for distribution's token auth: checks Basic credentials and
//! issues an RS256 JWT with an x5c header, signed with a throwaway key made by
//! the openssl command (distribution trusts the matching cert via rootcertbundle).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;

use super::http::{Handler, Reply, Request, Response, Server};
use super::require_tool;

pub const ISSUER: &str = "publish-test-issuer";
pub const SERVICE: &str = "publish-test-registry";

pub struct TokenServer {
    pub cert: PathBuf,
    /// Holds the key and cert until the server stops.
    _dir: tempfile::TempDir,
    server: Server,
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        require_tool("openssl", "apt-get install openssl");
        let dir = tempfile::tempdir().unwrap();
        super::self_signed(dir.path(), "publish-test-token");
        let key = dir.path().join("publish-test-token.key");
        let cert = dir.path().join("publish-test-token.pem");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert!(der.status.success());
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let key_path = key.clone();
        let user = user.to_string();
        let handler: Handler = Arc::new(move |request: Request| {
            let reply = issue(&request, &expected, &user, &x5c, &key_path);
            Box::pin(async move { reply })
        });
        let server = Server::start(handler);
        TokenServer {
            cert,
            _dir: dir,
            server,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.server.port)
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn issue(request: &Request, expected: &str, user: &str, x5c: &str, key: &PathBuf) -> Reply {
    if request.header("authorization") != Some(expected) {
        return Reply::Send(Response::new(
            401,
            r#"{"details":"invalid username or password"}"#,
        ));
    }
    let query = request.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "scope" {
            for scope in v.split(' ') {
                let parts: Vec<&str> = scope.split(':').collect();
                if parts.len() == 3 {
                    access.push(serde_json::json!({
                        "type": parts[0],
                        "name": parts[1],
                        "actions": parts[2].split(',').collect::<Vec<_>>(),
                    }));
                }
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 30, "iat": now,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst -sign failed");
    let token = format!("{signing_input}.{}", b64url(&out.stdout));
    let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 600});
    let mut response = Response::new(200, body.to_string());
    response
        .headers
        .push(("Content-Type".into(), "application/json".into()));
    Reply::Send(response)
}
