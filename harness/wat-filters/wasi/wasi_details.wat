;; Envoy's WASI details, probed from on_request_headers. The request goes
;; upstream with `x-wasi: a b c d e f g h`, each a two-digit number:
;;   a  clock_res_get(realtime) errno     b  the resolution is 1 ns (1/0)
;;   c  clock_res_get(cputime) errno      d  clock_time_get(cputime) errno
;;   e  fd_seek(1) errno                  f  fd_close(3) errno
;;   g  fd_write(3) errno                 h  environ_sizes_get's count
;; on_response_headers calls proc_exit(3), then adds `x-after-exit: yes`:
;; Envoy's proc_exit returns to the guest.
(module
  (import "wasi_snapshot_preview1" "clock_res_get"
    (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek"
    (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))

  (data (i32.const 0) "x-wasi")         ;; 6
  (data (i32.const 16) "x-after-exit")  ;; 12
  (data (i32.const 32) "yes")           ;; 3
  (data (i32.const 48) "lost")          ;; 4, written to fd 3
  (data (i32.const 56) "\30\00\00\00\04\00\00\00") ;; iovec {48, 4}

  (func (export "proxy_abi_version_0_2_0"))

  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  ;; Field `index` of x-wasi (built at 300): two digits and a space.
  (func $put (param $index i32) (param $value i32)
    (local $at i32)
    (local.set $at (i32.add (i32.const 300) (i32.mul (local.get $index) (i32.const 3))))
    (i32.store8 (local.get $at)
      (i32.add (i32.const 48) (i32.div_u (local.get $value) (i32.const 10))))
    (i32.store8 (i32.add (local.get $at) (i32.const 1))
      (i32.add (i32.const 48) (i32.rem_u (local.get $value) (i32.const 10))))
    (i32.store8 (i32.add (local.get $at) (i32.const 2)) (i32.const 32)))

  (func (export "proxy_on_request_headers")
    (param $ctx i32) (param $headers i32) (param $end_of_stream i32) (result i32)
    (i64.store (i32.const 100) (i64.const 0))
    (call $put (i32.const 0) (call $clock_res_get (i32.const 0) (i32.const 100)))
    (call $put (i32.const 1) (i64.eq (i64.load (i32.const 100)) (i64.const 1)))
    (call $put (i32.const 2) (call $clock_res_get (i32.const 2) (i32.const 100)))
    (call $put (i32.const 3) (call $clock_time_get (i32.const 2) (i64.const 0) (i32.const 100)))
    (call $put (i32.const 4) (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 100)))
    (call $put (i32.const 5) (call $fd_close (i32.const 3)))
    (call $put (i32.const 6) (call $fd_write (i32.const 3) (i32.const 56) (i32.const 1) (i32.const 100)))
    (drop (call $environ_sizes_get (i32.const 200) (i32.const 204)))
    (call $put (i32.const 7) (i32.load (i32.const 200)))
    ;; 8 fields, without the last space.
    (drop (call $add_header (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 300) (i32.const 23)))
    (i32.const 0))

  (func (export "proxy_on_response_headers")
    (param $ctx i32) (param $headers i32) (param $end_of_stream i32) (result i32)
    (call $proc_exit (i32.const 3))
    (drop (call $add_header (i32.const 2) (i32.const 16) (i32.const 12) (i32.const 32) (i32.const 3)))
    (i32.const 0))
)
