;; A response-header filter written by hand in WebAssembly text: no SDK, no
;; compiler, just the Proxy-Wasm ABI 0.2.1. It proves the harness serves the
;; ABI rather than the Rust SDK's habits.
;;
;; Plugin configuration: `name=value` (plain text). on_configure rejects
;; anything else; every response gets the header `name: value`.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)
  ;; Bump allocator above the first page; memory grows on demand.
  (global $heap (mut i32) (i32.const 65536))
  (global $name_ptr (mut i32) (i32.const 0))
  (global $name_len (mut i32) (i32.const 0))
  (global $value_ptr (mut i32) (i32.const 0))
  (global $value_len (mut i32) (i32.const 0))

  (data (i32.const 0) "wat filter configured")              ;; 21 bytes
  (data (i32.const 32) "configuration must be name=value")  ;; 32 bytes
  (data (i32.const 96) "wat filter added its header")       ;; 27 bytes
  ;; Out-parameters of hostcalls: 1024 (pointer), 1028 (size).

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.div_u (i32.sub (local.get $end) (local.get $have))
                                               (i32.const 65536))
                                    (i32.const 1)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  (func $reject (result i32)
    (drop (call $log (i32.const 4) (i32.const 32) (i32.const 32)))
    (i32.const 0))

  ;; Reads PLUGIN_CONFIGURATION (buffer 7) and splits it at the first '='.
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (local $ptr i32) (local $len i32) (local $i i32)
    (if (call $get_buffer_bytes (i32.const 7) (i32.const 0) (local.get $size)
                                (i32.const 1024) (i32.const 1028))
      (then (return (call $reject))))
    (local.set $ptr (i32.load (i32.const 1024)))
    (local.set $len (i32.load (i32.const 1028)))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $ptr) (local.get $i)))
                             (i32.const 61)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    ;; The name must be non-empty and the '=' present.
    (if (i32.or (i32.eqz (local.get $i)) (i32.ge_u (local.get $i) (local.get $len)))
      (then (return (call $reject))))
    (global.set $name_ptr (local.get $ptr))
    (global.set $name_len (local.get $i))
    (global.set $value_ptr (i32.add (local.get $ptr) (i32.add (local.get $i) (i32.const 1))))
    (global.set $value_len (i32.sub (local.get $len) (i32.add (local.get $i) (i32.const 1))))
    (drop (call $log (i32.const 2) (i32.const 0) (i32.const 21)))
    (i32.const 1))

  ;; Adds the header to the response headers (map 2) and continues.
  (func (export "proxy_on_response_headers")
    (param $ctx i32) (param $headers i32) (param $end_of_stream i32) (result i32)
    (if (i32.eqz (call $add_header (i32.const 2)
                       (global.get $name_ptr) (global.get $name_len)
                       (global.get $value_ptr) (global.get $value_len)))
      (then (drop (call $log (i32.const 1) (i32.const 96) (i32.const 27)))))
    (i32.const 0))
)
