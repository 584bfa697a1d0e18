//! [`StoreFuture`]: what every store method returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::StoreError;

/// The future a store method returns: a result already at hand, or a boxed future.
///
/// A backend whose work is done by the time the method returns (the memory store, an SQLite
/// read) answers with [`StoreFuture::ready`], which allocates nothing; a backend that waits
/// (a network round trip, a write on another thread) answers with [`StoreFuture::new`],
/// which boxes its `async` block once. Either way the store traits stay object-safe, so
/// `dyn SessionStore` and [`AnyStore`](super::AnyStore) work, and a caller awaits it like any
/// future.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use atsession::store::StoreFuture;
///
/// let now: StoreFuture<'_, u64> = StoreFuture::ready(Ok(1));
/// let later: StoreFuture<'_, u64> = StoreFuture::new(async move {
///     tokio::task::yield_now().await;
///     Ok(2)
/// });
/// assert_eq!(now.await.unwrap() + later.await.unwrap(), 3);
/// # }
/// ```
#[must_use = "a store call does nothing (or its result is lost) unless it is awaited"]
pub struct StoreFuture<'a, T>(Inner<'a, T>);

enum Inner<'a, T> {
    /// The result, until it is taken by the one poll that completes.
    Ready(Option<Result<T, StoreError>>),
    Boxed(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// A future of `future`'s result, boxed: for work that waits (`async move { … }`).
    pub fn new(future: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Self {
        Self(Inner::Boxed(Box::pin(future)))
    }

    /// A future that is ready with `result` at its first poll: for work done already.
    /// Allocates nothing.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self(Inner::Ready(Some(result)))
    }
}

// The result is moved out, never pinned, so the future may move whatever `T` is.
impl<T> Unpin for StoreFuture<'_, T> {}

impl<T> Future for StoreFuture<'_, T> {
    type Output = Result<T, StoreError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Inner::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                None => panic!("a StoreFuture was polled after it completed"),
            },
            Inner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Ready(_) => "StoreFuture::Ready",
            Inner::Boxed(_) => "StoreFuture::Boxed",
        })
    }
}
