//! A one-line progress report for long operations (a redrive, a draw over many entrants): on a
//! terminal it is rewritten in place on stderr; when stderr is piped or redirected nothing is
//! written, so scripts see only the results on stdout and the errors on stderr.

use std::io::{IsTerminal, Write};

pub struct Progress {
    out: Option<Box<dyn Write>>,
    shown: bool,
}

impl Progress {
    /// Reports on stderr when it is a terminal, else stays quiet.
    pub fn stderr() -> Self {
        let err = std::io::stderr();
        let out: Option<Box<dyn Write>> = if err.is_terminal() { Some(Box::new(err)) } else { None };
        Progress { out, shown: false }
    }

    #[cfg(test)]
    fn to(out: Box<dyn Write>) -> Self {
        Progress { out: Some(out), shown: false }
    }

    /// Replaces the line with `line`.
    pub fn show(&mut self, line: &str) {
        if let Some(out) = self.out.as_mut() {
            // Carriage return and erase the line: the next report takes its place.
            let _ = write!(out, "\r\x1b[2K{line}");
            let _ = out.flush();
            self.shown = true;
        }
    }

    /// Erases the line, so the results print on a clean one.
    pub fn clear(&mut self) {
        if let Some(out) = self.out.as_mut().filter(|_| self.shown) {
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_report_replaces_the_last_and_the_line_is_erased_at_the_end() {
        let buf = Shared::default();
        {
            let mut p = Progress::to(Box::new(buf.clone()));
            p.show("redriven 1");
            p.show("redriven 2");
        }
        let text = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
        assert_eq!(text, "\r\x1b[2Kredriven 1\r\x1b[2Kredriven 2\r\x1b[2K");
    }
}
