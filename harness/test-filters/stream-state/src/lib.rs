//! A filter that copies the request's `:path` into an `x-request-path`
//! response header, after asking the `backend` cluster about the request.
//!
//! Plugin configuration `root` keeps the path where many filters first keep
//! per-request data: in state shared by the root context with every stream
//! (here an `Rc` the root hands out; a `static` behaves the same). That is
//! only correct while one stream at a time runs on the VM: with two streams
//! paused on their callouts, the second overwrites the first's path and the
//! first answers with the wrong header. Configuration `stream` (the fix)
//! keeps the path in the stream context.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { in_root: false, shared_path: Rc::default() })
    });
}}

struct Root {
    in_root: bool,
    shared_path: Rc<RefCell<String>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match config.as_slice() {
            b"root" => self.in_root = true,
            b"stream" => self.in_root = false,
            _ => {
                log::error!("configuration must be `root` or `stream`");
                return false;
            }
        }
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            context_id,
            path: if self.in_root {
                Path::Shared(Rc::clone(&self.shared_path))
            } else {
                Path::Own(String::new())
            },
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum Path {
    Shared(Rc<RefCell<String>>),
    Own(String),
}

struct Stream {
    context_id: u32,
    path: Path,
}

impl Stream {
    fn set_path(&mut self, value: String) {
        match &mut self.path {
            Path::Shared(shared) => *shared.borrow_mut() = value,
            Path::Own(own) => *own = value,
        }
    }

    fn path(&self) -> String {
        match &self.path {
            Path::Shared(shared) => shared.borrow().clone(),
            Path::Own(own) => own.clone(),
        }
    }
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        log::info!("stream {} resumes for {}", self.context_id, self.path());
        self.resume_http_request();
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        log::info!("stream {} asks about {path}", self.context_id);
        self.set_path(path);
        let asked = self.dispatch_http_call(
            "backend",
            vec![
                (":method", "GET"),
                (":path", "/check"),
                (":authority", "backend"),
            ],
            None,
            vec![],
            Duration::from_secs(1),
        );
        match asked {
            Ok(_) => Action::Pause,
            Err(_) => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let path = self.path();
        self.set_http_response_header("x-request-path", Some(&path));
        Action::Continue
    }
}
