;; A filter declaring Proxy-Wasm ABI 0.2.0, written by hand: header callbacks
;; with end_of_stream, a missing header is NOT_FOUND (its status goes
;; upstream as `x-missing-header-status`, end_of_stream as `x-end-of-stream`),
;; the plugin configuration is read as buffer 7 and sent back as
;; `x-abi: <configuration>` on the response.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $config_ptr (mut i32) (i32.const 0))
  (global $config_len (mut i32) (i32.const 0))

  (data (i32.const 0) "x-missing-header-status")   ;; 23
  (data (i32.const 32) "x-not-sent")               ;; 10
  (data (i32.const 48) "x-abi")                    ;; 5
  (data (i32.const 64) "x-end-of-stream")          ;; 15
  (data (i32.const 128) "abi 0.2.0 configured")    ;; 20

  (func (export "proxy_abi_version_0_2_0"))

  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (call $get_buffer_bytes (i32.const 7) (i32.const 0) (local.get $size)
                                (i32.const 1024) (i32.const 1028))
      (then (return (i32.const 0))))
    (global.set $config_ptr (i32.load (i32.const 1024)))
    (global.set $config_len (i32.load (i32.const 1028)))
    (drop (call $log (i32.const 2) (i32.const 128) (i32.const 20)))
    (i32.const 1))

  (func $digit (param $value i32)
    (i32.store8 (i32.const 1040) (i32.add (i32.const 48) (local.get $value))))

  (func (export "proxy_on_request_headers")
    (param $ctx i32) (param $headers i32) (param $end_of_stream i32) (result i32)
    (call $digit (call $get_header (i32.const 0) (i32.const 32) (i32.const 10)
                                   (i32.const 1024) (i32.const 1028)))
    (drop (call $add_header (i32.const 0) (i32.const 0) (i32.const 23) (i32.const 1040) (i32.const 1)))
    (call $digit (local.get $end_of_stream))
    (drop (call $add_header (i32.const 0) (i32.const 64) (i32.const 15) (i32.const 1040) (i32.const 1)))
    (i32.const 0))

  (func (export "proxy_on_response_headers")
    (param $ctx i32) (param $headers i32) (param $end_of_stream i32) (result i32)
    (drop (call $add_header (i32.const 2) (i32.const 48) (i32.const 5)
                            (global.get $config_ptr) (global.get $config_len)))
    (i32.const 0))
)
