//! ECDSA signing with the per-signature work done ahead, in batches.
//!
//! An ECDSA signature (FIPS 186-5 §6.4.1) of a message digest `z` with the private key `d`
//! is `(r, s)`, where `r` is the x-coordinate of `k×G` (reduced modulo the group order `n`)
//! for a fresh secret nonce `k`, and `s = k⁻¹·(z + r·d) mod n`. All but that last step
//! depends on `k` alone, not on the key or the message: the multiplication `k×G` (which
//! reads a table of precomputed multiples of `G`, 30 KB for secp256k1, all of it, in
//! constant time), the conversion of that point to affine coordinates and `k⁻¹` (two
//! modular inversions).
//!
//! Signed one at a time on a request's path (a DPoP proof for every PDS call), that work
//! finds the table and its code evicted from the CPU's caches by whatever ran while the
//! request waited on the network. Here it is done for [`BATCH`] nonces at once: the table
//! stays in cache across the batch, and the inversions of a batch share one (Montgomery's
//! trick: `ff::BatchInverter` for the nonces, the curve's own `batch_normalize` for the
//! points). A signature then takes one `(k⁻¹, r)` pair out of a process-wide pool of its
//! curve and computes `s`: two scalar multiplications and an addition.
//!
//! The nonces are uniformly random (the operating system's generator, as for every key
//! and token here) instead of derived from the key and message (RFC 6979): they exist
//! before the message does. Both are ECDSA, and a verifier cannot tell them apart (the
//! reference client on Node signs with OpenSSL, whose nonces are random too). What a
//! random nonce demands is that none is ever used twice, nor known to anyone: each pair is
//! moved out of the pool exactly once (the slot it leaves is zeroed first), and wiped
//! when the signature is made. A pair is as secret as the private key (with the
//! signature it reveals `d`); it lives in this process's memory beside the key, is never
//! written anywhere, and the pool holds at most [`CAPACITY`].
//!
//! Every step is the curve crate's constant-time arithmetic, as in `ecdsa::hazmat`'s own
//! `sign_prehashed`, which this follows step by step with `k⁻¹` and `r` computed ahead.

use std::sync::{Mutex, PoisonError};

use ecdsa::elliptic_curve::ff::BatchInverter;
use ecdsa::elliptic_curve::ops::Reduce;
use ecdsa::elliptic_curve::point::AffineCoordinates as _;
use ecdsa::elliptic_curve::{
    CurveArithmetic, CurveGroup as _, Field as _, FieldBytes, Group as _, NonZeroScalar,
};
use ecdsa::{EcdsaCurve, Signature};
use zeroize::{Zeroize as _, Zeroizing};

use crate::secret::fill_random;

/// How many nonces are made at once.
pub(crate) const BATCH: usize = 16;

/// The most pairs a pool holds (a refill that finds it full drops, and wipes, the rest).
pub(crate) const CAPACITY: usize = 4 * BATCH;

/// A curve whose signatures are made from a pool of pairs made ahead.
pub(crate) trait Presign: EcdsaCurve + CurveArithmetic {
    /// The pool of this curve, shared by every key of the process.
    fn pool() -> &'static Pool<Self>;
}

impl Presign for k256::Secp256k1 {
    fn pool() -> &'static Pool<Self> {
        static POOL: Pool<k256::Secp256k1> = Pool::new();
        &POOL
    }
}

impl Presign for p256::NistP256 {
    fn pool() -> &'static Pool<Self> {
        static POOL: Pool<p256::NistP256> = Pool::new();
        &POOL
    }
}

/// The values of one future signature: `k⁻¹` and `r`. Wiped when dropped.
struct Pair<C: CurveArithmetic> {
    k_inv: C::Scalar,
    r: C::Scalar,
}

impl<C: CurveArithmetic> Drop for Pair<C> {
    fn drop(&mut self) {
        self.k_inv.zeroize();
        self.r.zeroize();
    }
}

/// The pairs of one curve, made ahead, each taken once.
pub(crate) struct Pool<C: CurveArithmetic> {
    ready: Mutex<Vec<Pair<C>>>,
}

impl<C: Presign> Pool<C> {
    const fn new() -> Self {
        Self {
            ready: Mutex::new(Vec::new()),
        }
    }

    /// How many pairs are ready.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// A pair no one else has or will have: from the pool, which is refilled (on this
    /// thread, [`BATCH`] at once) when it is empty.
    fn take(&self) -> Pair<C> {
        if let Some(pair) = take_last(&mut self.lock()) {
            return pair;
        }
        let mut made = make::<C>();
        // `make` returns at least one pair (it draws until it has a batch).
        let mine = take_last(&mut made);
        let mut ready = self.lock();
        // Room for all once, so that the buffer never moves (leaving copies behind).
        let len = ready.len();
        if ready.capacity() < CAPACITY {
            ready.reserve_exact(CAPACITY - len);
        }
        while ready.len() < CAPACITY {
            match take_last(&mut made) {
                Some(pair) => ready.push(pair),
                None => break,
            }
        }
        drop(ready);
        // A pair the pool had no room for is wiped by its `Drop`, and the slots `made`
        // gave up were zeroed by `take_last`.
        drop(made);
        match mine {
            Some(pair) => pair,
            // Unreachable: `make` returns BATCH pairs. Still no panic: take another.
            None => self.take(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pair<C>>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Moves the last pair out, leaving zeroes where it was in the vector's buffer.
fn take_last<C: CurveArithmetic>(pairs: &mut Vec<Pair<C>>) -> Option<Pair<C>> {
    let last = pairs.last_mut()?;
    let pair = Pair {
        k_inv: std::mem::take(&mut last.k_inv),
        r: std::mem::take(&mut last.r),
    };
    pairs.pop();
    Some(pair)
}

/// [`BATCH`] fresh pairs: random non-zero nonces, their points and their inverses, the
/// inversions batched.
fn make<C: Presign>() -> Vec<Pair<C>> {
    let mut ks: Vec<C::Scalar> = Vec::with_capacity(BATCH);
    let mut bytes = FieldBytes::<C>::default();
    let mut drawn = Zeroizing::new(vec![0u8; BATCH * bytes.len()]);
    while ks.len() < BATCH {
        // One call to the operating system's generator for the batch.
        fill_random(&mut drawn);
        for chunk in drawn.chunks_exact(bytes.len()) {
            bytes.copy_from_slice(chunk);
            // Uniform on [1, n): a draw that is zero or not below n is dropped.
            if let Some(k) = NonZeroScalar::<C>::from_repr(bytes).into_option()
                && ks.len() < BATCH
            {
                ks.push(*k);
            }
        }
    }
    bytes.zeroize();
    let mut points: Vec<C::ProjectivePoint> = ks
        .iter()
        .map(C::ProjectivePoint::mul_by_generator)
        .collect();
    let mut affine = vec![C::AffinePoint::default(); BATCH];
    C::ProjectivePoint::batch_normalize(&points, &mut affine);
    let mut scratch = vec![C::Scalar::ZERO; BATCH];
    // Every k is non-zero, so every inverse exists.
    BatchInverter::invert_with_external_scratch(&mut ks, &mut scratch);
    let mut pairs = Vec::with_capacity(BATCH);
    for (k_inv, point) in ks.iter().zip(&affine) {
        let r = <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&point.x());
        // r = 0 has probability about 1/n; such a nonce is not used.
        if !bool::from(r.is_zero()) {
            pairs.push(Pair { k_inv: *k_inv, r });
        }
    }
    ks.zeroize();
    scratch.zeroize();
    // The points are k×G, from which k is a discrete logarithm away, but whose x is r:
    // as secret as the pairs until used.
    affine.zeroize();
    points.zeroize();
    pairs
}

/// The ECDSA signature by `d` of a message whose SHA-256 digest is `digest`, with a pair
/// from the pool (low-S normalized where the curve asks for it, as secp256k1 does).
pub(crate) fn sign<C: Presign>(d: &NonZeroScalar<C>, digest: &FieldBytes<C>) -> Signature<C> {
    // The digest is exactly as long as the order's bytes: bits2int is the digest itself.
    let z = <C::Scalar as Reduce<FieldBytes<C>>>::reduce(digest);
    loop {
        let pair = C::pool().take();
        let s = pair.k_inv * (z + pair.r * d.as_ref());
        // `from_scalars` refuses s = 0 (probability about 1/n): take another pair.
        if let Ok(signature) = Signature::<C>::from_scalars(pair.r, s) {
            return if C::NORMALIZE_S {
                signature.normalize_s()
            } else {
                signature
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use ecdsa::signature::Verifier as _;
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn check<C: Presign>(
        d: &NonZeroScalar<C>,
        verify: impl Fn(&[u8], &Signature<C>) -> bool,
    ) -> Vec<FieldBytes<C>> {
        let mut rs = Vec::new();
        for i in 0..(3 * BATCH + 5) {
            let message = format!("message {i}");
            let digest = Sha256::digest(message.as_bytes());
            let digest = FieldBytes::<C>::try_from(digest.as_slice()).unwrap();
            let signature = sign::<C>(d, &digest);
            assert!(
                verify(message.as_bytes(), &signature),
                "signature {i} verifies"
            );
            assert!(
                !verify(b"another message", &signature),
                "signature {i} is of its message only"
            );
            rs.push(signature.split_bytes().0);
        }
        rs
    }

    fn all_distinct<T: PartialEq>(values: &[T]) -> bool {
        values
            .iter()
            .enumerate()
            .all(|(i, a)| values[i + 1..].iter().all(|b| a != b))
    }

    #[test]
    fn secp256k1_signatures_verify_low_s_each_with_its_own_nonce() {
        let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let verifying = *key.verifying_key();
        let rs = check::<k256::Secp256k1>(key.as_nonzero_scalar(), |m, s| {
            // k256's verifier refuses a high s.
            verifying.verify(m, s).is_ok() && s.normalize_s() == *s
        });
        assert!(all_distinct(&rs), "no r (no nonce) used twice");
    }

    #[test]
    fn p256_signatures_verify_each_with_its_own_nonce() {
        let key = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let verifying = *key.verifying_key();
        let rs = check::<p256::NistP256>(key.as_nonzero_scalar(), |m, s| {
            verifying.verify(m, s).is_ok()
        });
        assert!(all_distinct(&rs), "no r (no nonce) used twice");
    }

    #[test]
    fn the_same_message_signs_differently_and_the_pool_stays_bounded() {
        let key = k256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
        let digest = Sha256::digest(b"same");
        let a = sign::<k256::Secp256k1>(key.as_nonzero_scalar(), &digest);
        let b = sign::<k256::Secp256k1>(key.as_nonzero_scalar(), &digest);
        assert_ne!(a, b, "a fresh nonce for each signature");
        assert!(k256::Secp256k1::pool().len() <= CAPACITY);
    }

    #[test]
    fn threads_never_share_a_nonce() {
        let key = k256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
        let rs: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let key = &key;
                    scope.spawn(move || {
                        (0..2 * BATCH)
                            .map(|i| {
                                let digest = Sha256::digest(format!("{t}/{i}").as_bytes());
                                sign::<k256::Secp256k1>(key.as_nonzero_scalar(), &digest)
                                    .split_bytes()
                                    .0
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(rs.len(), 4 * 2 * BATCH);
        assert!(all_distinct(&rs));
    }
}
