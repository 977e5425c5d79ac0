//! The raw Proxy-Wasm 0.2.1 imports, declared here with plain integer types so
//! the probe sees the exact status code of every call (the SDK's wrappers
//! panic on codes they do not expect). Callouts that must be routed back by
//! the SDK's dispatcher (http_call, grpc_call, grpc_stream) go through the SDK.

use std::ptr::null_mut;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_buffer_status(buffer: u32, length: *mut usize, flags: *mut u32) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_size(map: u32, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_size: usize, queue: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id: *const u8,
        vm_id_size: usize,
        name: *const u8,
        name_size: usize,
        queue: *mut u32,
    ) -> u32;
    fn proxy_dequeue_shared_queue(queue: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_enqueue_shared_queue(queue: u32, data: *const u8, size: usize) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_grpc_send(token: u32, message: *const u8, size: usize, end_stream: u32) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_get_status(code: *mut u32, message: *mut *mut u8, message_size: *mut usize) -> u32;
    fn proxy_set_effective_context(context: u32) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        result: *mut *mut u8,
        result_size: *mut usize,
    ) -> u32;
    fn proxy_done() -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_get_metric(id: u32, value: *mut u64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

/// Takes ownership of a host-allocated (ptr, len) pair. The host allocates
/// through `proxy_on_memory_allocate` exactly `len` bytes; ptr 0 means empty.
fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the host allocated `len` bytes at `ptr` with the SDK's allocator
    // (a boxed slice of exactly `len` bytes) and hands ownership to us.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

pub fn log(level: u32, message: &str) -> u32 {
    // SAFETY: pointer and length describe a live &str.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) }
}

pub fn get_log_level() -> (u32, u32) {
    let mut level = 0;
    // SAFETY: valid out-pointer.
    let status = unsafe { proxy_get_log_level(&mut level) };
    (status, level)
}

pub fn current_time() -> (u32, u64) {
    let mut time = 0;
    // SAFETY: valid out-pointer.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut time) };
    (status, time)
}

pub fn set_tick_period(ms: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_set_tick_period_milliseconds(ms) }
}

pub fn get_buffer(buffer: u32, start: usize, max: usize) -> (u32, Vec<u8>) {
    let (mut ptr, mut len) = (null_mut(), 0);
    // SAFETY: valid out-pointers; the result is owned by us afterwards.
    let status = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut ptr, &mut len) };
    (status, take(ptr, len))
}

pub fn set_buffer(buffer: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    // SAFETY: pointer and length describe a live slice.
    unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) }
}

pub fn buffer_status(buffer: u32) -> (u32, usize, u32) {
    let (mut length, mut flags) = (0, 0);
    // SAFETY: valid out-pointers.
    let status = unsafe { proxy_get_buffer_status(buffer, &mut length, &mut flags) };
    (status, length, flags)
}

pub fn get_pairs(map: u32) -> (u32, Vec<u8>) {
    let (mut ptr, mut len) = (null_mut(), 0);
    // SAFETY: valid out-pointers.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut ptr, &mut len) };
    (status, take(ptr, len))
}

pub fn set_pairs(map: u32, serialized: &[u8]) -> u32 {
    // SAFETY: pointer and length describe a live slice.
    unsafe { proxy_set_header_map_pairs(map, serialized.as_ptr(), serialized.len()) }
}

pub fn map_size(map: u32) -> (u32, usize) {
    let mut size = 0;
    // SAFETY: valid out-pointer.
    let status = unsafe { proxy_get_header_map_size(map, &mut size) };
    (status, size)
}

pub fn get_value(map: u32, key: &str) -> (u32, Vec<u8>) {
    let (mut ptr, mut len) = (null_mut(), 0);
    // SAFETY: live key slice, valid out-pointers.
    let status =
        unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), &mut ptr, &mut len) };
    (status, take(ptr, len))
}

pub fn add_value(map: u32, key: &str, value: &str) -> u32 {
    // SAFETY: live slices.
    unsafe { proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

pub fn replace_value(map: u32, key: &str, value: &str) -> u32 {
    // SAFETY: live slices.
    unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    }
}

pub fn remove_value(map: u32, key: &str) -> u32 {
    // SAFETY: live slice.
    unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) }
}

pub fn get_property(path: &[u8]) -> (u32, Vec<u8>) {
    let (mut ptr, mut len) = (null_mut(), 0);
    // SAFETY: live path slice, valid out-pointers.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut ptr, &mut len) };
    (status, take(ptr, len))
}

pub fn set_property(path: &[u8], value: &[u8]) -> u32 {
    // SAFETY: live slices.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) }
}

pub fn get_shared_data(key: &str) -> (u32, Vec<u8>, u32) {
    let (mut ptr, mut len, mut cas) = (null_mut(), 0, 0);
    // SAFETY: live key slice, valid out-pointers.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut cas) };
    (status, take(ptr, len), cas)
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> u32 {
    // SAFETY: live slices.
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

pub fn register_queue(name: &str) -> (u32, u32) {
    let mut id = 0;
    // SAFETY: live slice, valid out-pointer.
    let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub fn resolve_queue(vm_id: &str, name: &str) -> (u32, u32) {
    let mut id = 0;
    // SAFETY: live slices, valid out-pointer.
    let status = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    (status, id)
}

pub fn dequeue(queue: u32) -> (u32, Vec<u8>) {
    let (mut ptr, mut len) = (null_mut(), 0);
    // SAFETY: valid out-pointers.
    let status = unsafe { proxy_dequeue_shared_queue(queue, &mut ptr, &mut len) };
    (status, take(ptr, len))
}

pub fn enqueue(queue: u32, data: &[u8]) -> u32 {
    // SAFETY: live slice.
    unsafe { proxy_enqueue_shared_queue(queue, data.as_ptr(), data.len()) }
}

pub fn continue_stream(stream: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_continue_stream(stream) }
}

pub fn close_stream(stream: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_close_stream(stream) }
}

pub fn send_local_response(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[u8],
    grpc_status: i32,
) -> u32 {
    // SAFETY: live slices.
    unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    }
}

pub fn grpc_send(token: u32, message: &[u8], end_stream: bool) -> u32 {
    // SAFETY: live slice.
    unsafe {
        proxy_grpc_send(
            token,
            message.as_ptr(),
            message.len(),
            u32::from(end_stream),
        )
    }
}

pub fn grpc_cancel(token: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_grpc_cancel(token) }
}

pub fn grpc_close(token: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_grpc_close(token) }
}

pub fn get_status() -> (u32, u32, Vec<u8>) {
    let (mut code, mut ptr, mut len) = (0, null_mut(), 0);
    // SAFETY: valid out-pointers.
    let status = unsafe { proxy_get_status(&mut code, &mut ptr, &mut len) };
    (status, code, take(ptr, len))
}

pub fn set_effective_context(context: u32) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_set_effective_context(context) }
}

pub fn call_foreign(name: &str, args: &[u8]) -> (u32, Vec<u8>) {
    let (mut ptr, mut len) = (null_mut(), 0);
    // SAFETY: live slices, valid out-pointers.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            args.as_ptr(),
            args.len(),
            &mut ptr,
            &mut len,
        )
    };
    (status, take(ptr, len))
}

pub fn done() -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_done() }
}

pub fn define_metric(kind: u32, name: &str) -> (u32, u32) {
    let mut id = 0;
    // SAFETY: live slice, valid out-pointer.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub fn get_metric(id: u32) -> (u32, u64) {
    let mut value = 0;
    // SAFETY: valid out-pointer.
    let status = unsafe { proxy_get_metric(id, &mut value) };
    (status, value)
}

pub fn record_metric(id: u32, value: u64) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_record_metric(id, value) }
}

pub fn increment_metric(id: u32, offset: i64) -> u32 {
    // SAFETY: no pointers.
    unsafe { proxy_increment_metric(id, offset) }
}

/// WASI random_get; returns the WASI errno (0 = success) and the bytes.
pub fn random(len: usize) -> (u16, Vec<u8>) {
    let mut buf = vec![0u8; len];
    // SAFETY: buf is a live, writable slice of `len` bytes.
    let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    (errno, buf)
}
