//! [`ErrorChain`]: an error and its causes on one line.

use std::error::Error;
use std::fmt;

/// Displays an error and its causes, `outer: inner: …`, for logs and for the detailed
/// messages of development setups. The library's errors carry no secrets, so neither does
/// the chain.
///
/// ```
/// use atsession::ErrorChain;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("the store failed")]
/// struct Outer(#[source] std::io::Error);
///
/// let e = Outer(std::io::Error::other("disk full"));
/// assert_eq!(ErrorChain(&e).to_string(), "the store failed: disk full");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
