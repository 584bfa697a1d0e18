//! `store_trait!`: declares a store trait and forwards it, so that each method is written
//! once, in the trait.
//!
//! The trait is emitted as written (with `'static` added to its supertraits), and
//! implemented by forwarding every method for `Arc<T>` and `Box<T>` (`T: ?Sized`, so for
//! `Arc<dyn SessionStore>` and `Box<dyn Store>` too) and for
//! [`AnyStore`](super::AnyStore), which hands each call to its backend as a
//! `&dyn` [`Store`](super::Store). A provided method keeps its body in the trait; the
//! forwarding impls call the forwarded store's own, so an override (SQLite's joined read)
//! is never lost behind an `Arc` or an `AnyStore`.
//!
//! Each method takes `&self` (or `&'a self`) and named arguments, and returns a type
//! named by one identifier, with a lifetime and a type as its generic arguments when it has
//! any: `StoreFuture<'a, T>` or `bool`.

macro_rules! store_trait {
    (
        $(#[$attr:meta])*
        pub trait $trait:ident: $first:ident $(+ $sup:ident)* {
            $($items:tt)*
        }
    ) => {
        $(#[$attr])*
        pub trait $trait: $first $(+ $sup)* + 'static {
            $($items)*
        }
        store_trait!(@forward $trait; $($items)*);
    };
    (@forward $trait:ident;
        $(
            $(#[$fattr:meta])*
            fn $name:ident $(<$lt:lifetime>)? (
                &$($slt:lifetime)? self $(, $arg:ident: $argty:ty)* $(,)?
            ) -> $ret:ident $(<$rlt:lifetime, $out:ty>)?
            $($body:block)? $(;)?
        )*
    ) => {
        impl<T: ?Sized + $trait> $trait for ::std::sync::Arc<T> {
            $(
                #[inline]
                fn $name $(<$lt>)? (&$($slt)? self $(, $arg: $argty)*) -> $ret $(<$rlt, $out>)? {
                    T::$name(&**self $(, $arg)*)
                }
            )*
        }

        impl<T: ?Sized + $trait> $trait for ::std::boxed::Box<T> {
            $(
                #[inline]
                fn $name $(<$lt>)? (&$($slt)? self $(, $arg: $argty)*) -> $ret $(<$rlt, $out>)? {
                    T::$name(&**self $(, $arg)*)
                }
            )*
        }

        impl $trait for crate::store::AnyStore {
            $(
                #[inline]
                fn $name $(<$lt>)? (&$($slt)? self $(, $arg: $argty)*) -> $ret $(<$rlt, $out>)? {
                    <dyn crate::store::Store as $trait>::$name(self.inner() $(, $arg)*)
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use crate::app::SessionManager;
    use crate::store::oauth::SessionGrantStore;
    use crate::store::{MemoryStore, SessionStore, Store};

    #[tokio::test]
    async fn the_traits_are_object_safe_and_forwarded_through_arc_and_box() {
        let shared: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let sessions = SessionManager::new(Arc::clone(&shared));
        let new = sessions
            .create("did:plc:abc", "alice.test", ())
            .await
            .unwrap();
        let hash = new.token.hash();

        let boxed: Box<dyn SessionStore> = Box::new(Arc::clone(&shared));
        assert!(boxed.load_by_token(&hash).await.unwrap().is_some());
        let (session, grant) = shared
            .load_by_token_with_grant(&hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.did.as_str(), "did:plc:abc");
        assert!(grant.is_none());
        assert!(!shared.reads_together());
    }
}
