//! Capturing what libbpf prints (the verifier log on a rejected load, the
//! netlink noise of tc attach) instead of letting it reach stderr.

use std::cell::RefCell;

use libbpf_rs::PrintLevel;

thread_local! {
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn print_cb(level: PrintLevel, msg: String) {
    let captured = CAPTURE.with(|c| {
        if let Some(buf) = c.borrow_mut().as_mut() {
            buf.push_str(&msg);
            true
        } else {
            false
        }
    });
    if !captured && level == PrintLevel::Warn {
        eprint!("{msg}");
    }
}

/// Runs `f` with libbpf's output collected; returns it alongside.
///
/// The print callback is process-wide: it is installed for the call and the
/// previous one restored after; output from other threads meanwhile goes to
/// stderr at warning level.
pub(crate) fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
    let prev = libbpf_rs::set_print(Some((PrintLevel::Debug, print_cb)));
    CAPTURE.with(|c| *c.borrow_mut() = Some(String::new()));
    let r = f();
    let log = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    libbpf_rs::set_print(prev);
    (r, log)
}
