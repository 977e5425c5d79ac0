;; A module built the way Emscripten builds one: it imports the two runtime
;; functions Envoy provides under `env`. Start-up (`_initialize`) reports a
;; memory growth; on_request_headers sends `x-pthread-equal: <a><b>` upstream,
;; where a is pthread_equal(3, 3) and b is pthread_equal(3, 4).
(module
  (import "env" "emscripten_notify_memory_growth" (func $notify_growth (param i32)))
  (import "env" "pthread_equal" (func $pthread_equal (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))

  (data (i32.const 0) "x-pthread-equal")   ;; 15

  (func (export "proxy_abi_version_0_2_0"))

  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))

  (func (export "_initialize")
    ;; start-up calls
    (call $notify_growth (i32.const 0)))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers")
    (param $ctx i32) (param $headers i32) (param $end_of_stream i32) (result i32)
    (i32.store8 (i32.const 32)
      (i32.add (i32.const 48) (call $pthread_equal (i32.const 3) (i32.const 3))))
    (i32.store8 (i32.const 33)
      (i32.add (i32.const 48) (call $pthread_equal (i32.const 3) (i32.const 4))))
    (drop (call $add_header (i32.const 0) (i32.const 0) (i32.const 15) (i32.const 32) (i32.const 2)))
    (i32.const 0))
)
