//! Capturing what libbpf prints (the verifier log on a rejected load, the
//! netlink noise of tc attach) instead of letting it reach stderr.

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

use libbpf_rs::{PrintCallback, PrintLevel};

thread_local! {
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// How many captures run now, in any thread, and the print callback that
/// was installed before the first of them: libbpf's callback is
/// process-wide, so the last capture to end restores it (a capture that
/// restored it while another thread's load still ran lost that load's log).
static ACTIVE: Mutex<(usize, Option<(PrintLevel, PrintCallback)>)> = Mutex::new((0, None));

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

/// One capture running; ends it on drop, a panic of the captured call
/// included.
struct Active;

impl Active {
    fn start() -> Active {
        let mut a = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        if a.0 == 0 {
            a.1 = libbpf_rs::set_print(Some((PrintLevel::Debug, print_cb)));
        }
        a.0 += 1;
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let mut a = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        a.0 -= 1;
        if a.0 == 0 {
            let prev = a.1.take();
            libbpf_rs::set_print(prev);
        }
    }
}

/// Runs `f` with libbpf's output on this thread collected; returns it
/// alongside.
///
/// The print callback is process-wide: it is installed while any capture
/// runs and the previous one restored when the last ends; output from
/// other threads meanwhile goes to stderr at warning level.
pub(crate) fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
    let _active = Active::start();
    CAPTURE.with(|c| *c.borrow_mut() = Some(String::new()));
    let r = f();
    let log = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, log)
}
