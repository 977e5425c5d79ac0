;; A network (TCP) filter written by hand in WebAssembly text: no SDK, only
;; the Proxy-Wasm ABI 0.2.1 network callbacks. It counts each connection's
;; bytes in both directions into two counters, and logs how the connection
;; closed. Plugin configuration `hold` makes it pause the client's data
;; until the client closes its side (then it lets everything through).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric"
    (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric"
    (func $increment_metric (param i32 i64) (result i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $hold (mut i32) (i32.const 0))

  (data (i32.const 0) "tcp_count.downstream_bytes")     ;; 26 bytes
  (data (i32.const 32) "tcp_count.upstream_bytes")      ;; 24 bytes
  (data (i32.const 64) "tcp_count: new connection")     ;; 25 bytes
  (data (i32.const 96) "tcp_count: closed by the client")  ;; 31 bytes
  (data (i32.const 128) "tcp_count: closed by the proxy")  ;; 30 bytes
  (data (i32.const 160) "tcp_count: upstream finished") ;; 28 bytes
  (data (i32.const 192) "hold")                         ;; 4 bytes
  ;; Metric ids at 1040 (downstream) and 1044 (upstream); hostcall
  ;; out-parameters at 1024 (pointer) and 1028 (size).

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.div_u (local.get $size) (i32.const 65536))
                                          (i32.const 1)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))

  ;; Defines the counters; configuration `hold` turns holding on.
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $define_metric (i32.const 0) (i32.const 0) (i32.const 26) (i32.const 1040)))
    (drop (call $define_metric (i32.const 0) (i32.const 32) (i32.const 24) (i32.const 1044)))
    (if (i32.eq (local.get $size) (i32.const 4))
      (then
        (drop (call $get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const 4)
                                      (i32.const 1024) (i32.const 1028)))
        (if (i32.eq (i32.load (i32.load (i32.const 1024))) (i32.load (i32.const 192)))
          (then (global.set $hold (i32.const 1))))))
    (i32.const 1))

  (func (export "proxy_on_new_connection") (param $ctx i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 64) (i32.const 25)))
    (i32.const 0))

  (func $count (param $metric i32) (param $size i32)
    (if (local.get $size)
      (then (drop (call $increment_metric (i32.load (local.get $metric))
                                          (i64.extend_i32_u (local.get $size)))))))

  ;; Counts only new bytes: a held buffer comes back whole with the next chunk.
  (global $seen (mut i32) (i32.const 0))
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (call $count (i32.const 1040) (i32.sub (local.get $size) (global.get $seen)))
    (if (i32.and (global.get $hold) (i32.eqz (local.get $eos)))
      (then
        (global.set $seen (local.get $size))
        (return (i32.const 1))))
    (global.set $seen (i32.const 0))
    (i32.const 0))

  (func (export "proxy_on_upstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (call $count (i32.const 1044) (local.get $size))
    (i32.const 0))

  (func (export "proxy_on_upstream_connection_close") (param $ctx i32) (param $peer i32)
    (drop (call $log (i32.const 2) (i32.const 160) (i32.const 28))))

  ;; Peer type 2 is the remote side (the client), 1 the proxy itself.
  (func (export "proxy_on_downstream_connection_close") (param $ctx i32) (param $peer i32)
    (if (i32.eq (local.get $peer) (i32.const 2))
      (then (drop (call $log (i32.const 2) (i32.const 96) (i32.const 31))))
      (else (drop (call $log (i32.const 2) (i32.const 128) (i32.const 30)))))))
