;; A filter declaring Proxy-Wasm ABI 0.1.0, written by hand to pin down what
;; differs from 0.2.x:
;; - proxy_on_vm_start / proxy_on_configure read their configuration with
;;   proxy_get_configuration (VM configuration, then plugin configuration)
;;   and reject it when its size is not the one they were given;
;; - header callbacks take (context, headers), no end_of_stream;
;; - reading a missing request header returns OK (and an empty value): the
;;   status is forwarded upstream as `x-missing-header-status`;
;; - on_request_headers pauses and resumes itself with proxy_continue_request;
;; - on_response_headers calls proxy_clear_route_cache and adds
;;   `x-abi: <plugin configuration>` and `x-clear-route-cache: <status>`.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_configuration" (func $get_configuration (param i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_request" (func $continue_request (result i32)))
  (import "env" "proxy_clear_route_cache" (func $clear_route_cache (result i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $config_ptr (mut i32) (i32.const 0))
  (global $config_len (mut i32) (i32.const 0))

  (data (i32.const 0) "x-missing-header-status")   ;; 23
  (data (i32.const 32) "x-not-sent")               ;; 10
  (data (i32.const 48) "x-abi")                    ;; 5
  (data (i32.const 64) "x-clear-route-cache")      ;; 19
  (data (i32.const 96) "configuration size mismatch") ;; 27
  (data (i32.const 128) "abi 0.1.0 configured")    ;; 20
  ;; 1024/1028: out-parameters; 1040: one digit.

  (func (export "proxy_abi_version_0_1_0"))

  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))

  ;; proxy_get_configuration into 1024/1028; false unless its size is `expected`.
  (func $configuration_is (param $expected i32) (result i32)
    (if (call $get_configuration (i32.const 1024) (i32.const 1028))
      (then (return (i32.const 0))))
    (if (i32.ne (i32.load (i32.const 1028)) (local.get $expected))
      (then
        (drop (call $log (i32.const 4) (i32.const 96) (i32.const 27)))
        (return (i32.const 0))))
    (i32.const 1))

  (func (export "proxy_on_vm_start") (param $root i32) (param $vm_config_size i32) (result i32)
    (call $configuration_is (local.get $vm_config_size)))

  (func (export "proxy_on_configure") (param $root i32) (param $plugin_config_size i32) (result i32)
    (if (i32.eqz (call $configuration_is (local.get $plugin_config_size)))
      (then (return (i32.const 0))))
    (global.set $config_ptr (i32.load (i32.const 1024)))
    (global.set $config_len (i32.load (i32.const 1028)))
    (drop (call $log (i32.const 2) (i32.const 128) (i32.const 20)))
    (i32.const 1))

  ;; Writes the digit of `status` at 1040.
  (func $digit (param $status i32)
    (i32.store8 (i32.const 1040) (i32.add (i32.const 48) (local.get $status))))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param $headers i32) (result i32)
    (call $digit (call $get_header (i32.const 0) (i32.const 32) (i32.const 10)
                                   (i32.const 1024) (i32.const 1028)))
    (drop (call $add_header (i32.const 0) (i32.const 0) (i32.const 23) (i32.const 1040) (i32.const 1)))
    (drop (call $continue_request))
    (i32.const 1))

  (func (export "proxy_on_response_headers") (param $ctx i32) (param $headers i32) (result i32)
    (call $digit (call $clear_route_cache))
    (drop (call $add_header (i32.const 2) (i32.const 64) (i32.const 19) (i32.const 1040) (i32.const 1)))
    (drop (call $add_header (i32.const 2) (i32.const 48) (i32.const 5)
                            (global.get $config_ptr) (global.get $config_len)))
    (i32.const 0))
)
