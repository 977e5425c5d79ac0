// Montgomery arithmetic modulo an odd number, for one limb width: included
// by rs256.rs into a module that defines `Limb` and `Wide` (twice as wide),
// so both widths are built and tested from this one text.
//
// Values are little-endian limb vectors of the modulus's length. Only
// public values pass through here, so everything is variable-time.

const LIMB_BITS: u32 = Limb::BITS;
const LIMB_BYTES: usize = Limb::BITS as usize / 8;

/// An odd modulus n with what Montgomery multiplication needs.
#[derive(Clone)]
pub(crate) struct Modulus {
    /// n, least significant limb first.
    n: Vec<Limb>,
    /// -n^-1 mod 2^LIMB_BITS, the reduction factor.
    n_inv: Limb,
    /// R^2 mod n with R = 2^(LIMB_BITS * n.len()): maps into Montgomery form.
    r_squared: Vec<Limb>,
}

impl Modulus {
    /// `be` is the modulus in big-endian bytes without leading zeros, `bits`
    /// its exact bit length (at least 2), and it must be odd.
    pub(crate) fn new(be: &[u8], bits: usize) -> Modulus {
        let n = limbs_from_be(be, be.len().div_ceil(LIMB_BYTES));
        let mut modulus = Modulus {
            n_inv: negated_inverse(n[0]),
            n,
            r_squared: Vec::new(),
        };
        modulus.r_squared = modulus.compute_r_squared(bits);
        modulus
    }

    /// s^e mod n into the big-endian bytes of `out` (which hold n), where
    /// `s` is big-endian too; false, with `out` untouched, if s >= n.
    pub(crate) fn power(&self, s: &[u8], e: u64, out: &mut [u8]) -> bool {
        let len = self.n.len();
        if s.len() > len * LIMB_BYTES {
            return false;
        }
        let s = limbs_from_be(s, len);
        if !less_than(&s, &self.n) {
            return false;
        }
        let mut scratch = vec![0; 2 * len + 1];
        let base = self.multiply(&s, &self.r_squared, &mut scratch);
        let acc = self.power_in_form(base, u128::from(e), &mut scratch);
        let mut one = vec![0; len];
        one[0] = 1;
        limbs_to_be(&self.multiply(&acc, &one, &mut scratch), out);
        true
    }

    /// base^e for `base` in Montgomery form (e >= 1): left-to-right binary.
    fn power_in_form(&self, base: Vec<Limb>, e: u128, scratch: &mut [Limb]) -> Vec<Limb> {
        let mut acc = base.clone();
        for bit in (0..127 - e.leading_zeros()).rev() {
            acc = self.square(&acc, scratch);
            if e >> bit & 1 == 1 {
                acc = self.multiply(&acc, &base, scratch);
            }
        }
        acc
    }

    /// R^2 mod n: 2R mod n by doubling 2^(bits-1) (which is below n), then
    /// raised to LIMB_BITS * len in Montgomery form, giving R * 2^(LIMB_BITS
    /// * len) = R^2. A dozen multiplications instead of thousands of doublings.
    fn compute_r_squared(&self, bits: usize) -> Vec<Limb> {
        let len = self.n.len();
        let r_bits = len * LIMB_BITS as usize;
        let mut two = vec![0; len];
        two[(bits - 1) / LIMB_BITS as usize] = 1 << ((bits - 1) % LIMB_BITS as usize);
        for _ in bits - 1..r_bits + 1 {
            self.double(&mut two);
        }
        let mut scratch = vec![0; 2 * len + 1];
        self.power_in_form(two, r_bits as u128, &mut scratch)
    }

    /// x = 2x mod n, for x < n.
    fn double(&self, x: &mut [Limb]) {
        let mut carry = 0;
        for limb in x.iter_mut() {
            let next = *limb >> (LIMB_BITS - 1);
            *limb = *limb << 1 | carry;
            carry = next;
        }
        if carry == 1 || !less_than(x, &self.n) {
            subtract(x, &self.n);
        }
    }

    /// a * b / R mod n, for a, b < n.
    fn multiply(&self, a: &[Limb], b: &[Limb], t: &mut [Limb]) -> Vec<Limb> {
        let len = self.n.len();
        t.fill(0);
        for (i, &ai) in a.iter().enumerate() {
            let mut carry: Wide = 0;
            for (tj, &bj) in t[i..i + len].iter_mut().zip(b) {
                let sum = Wide::from(*tj) + Wide::from(ai) * Wide::from(bj) + carry;
                *tj = sum as Limb;
                carry = sum >> LIMB_BITS;
            }
            t[i + len] = carry as Limb;
        }
        self.reduce(t)
    }

    /// a * a / R mod n: each cross product once, doubled, then the squares
    /// added; three quarters of a general multiplication's work.
    fn square(&self, a: &[Limb], t: &mut [Limb]) -> Vec<Limb> {
        let len = self.n.len();
        t.fill(0);
        for (i, &ai) in a.iter().enumerate() {
            let mut carry: Wide = 0;
            for (tj, &aj) in t[2 * i + 1..i + len].iter_mut().zip(&a[i + 1..]) {
                let sum = Wide::from(*tj) + Wide::from(ai) * Wide::from(aj) + carry;
                *tj = sum as Limb;
                carry = sum >> LIMB_BITS;
            }
            t[i + len] = carry as Limb;
        }
        let mut top = 0;
        for limb in t[..2 * len].iter_mut() {
            let next = *limb >> (LIMB_BITS - 1);
            *limb = *limb << 1 | top;
            top = next;
        }
        let mut carry: Wide = 0;
        for (pair, &ai) in t[..2 * len].chunks_exact_mut(2).zip(a) {
            let low = Wide::from(pair[0]) + Wide::from(ai) * Wide::from(ai) + carry;
            pair[0] = low as Limb;
            let high = Wide::from(pair[1]) + (low >> LIMB_BITS);
            pair[1] = high as Limb;
            carry = high >> LIMB_BITS;
        }
        self.reduce(t)
    }

    /// Montgomery reduction of the 2*len-limb product in `t` (whose last
    /// limb, t[2 * len], starts at zero): t / R mod n, below n.
    fn reduce(&self, t: &mut [Limb]) -> Vec<Limb> {
        let len = self.n.len();
        for i in 0..len {
            let m = t[i].wrapping_mul(self.n_inv);
            let mut carry: Wide = 0;
            for (tj, &nj) in t[i..i + len].iter_mut().zip(&self.n) {
                let sum = Wide::from(*tj) + Wide::from(m) * Wide::from(nj) + carry;
                *tj = sum as Limb;
                carry = sum >> LIMB_BITS;
            }
            let mut k = i + len;
            while carry != 0 {
                let sum = Wide::from(t[k]) + carry;
                t[k] = sum as Limb;
                carry = sum >> LIMB_BITS;
                k += 1;
            }
        }
        // Below 2n: t[2 * len] is the one bit beyond len limbs.
        let mut result = t[len..2 * len].to_vec();
        if t[2 * len] != 0 || !less_than(&result, &self.n) {
            subtract(&mut result, &self.n);
        }
        result
    }
}

/// Big-endian bytes into `len` limbs, least significant first (the caller
/// makes `len` hold them all).
fn limbs_from_be(bytes: &[u8], len: usize) -> Vec<Limb> {
    let mut limbs = vec![0; len];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks(LIMB_BYTES)) {
        *limb = chunk.iter().fold(0, |acc, &b| acc << 8 | Limb::from(b));
    }
    limbs
}

/// Limbs into the big-endian bytes of `out`, which hold them.
fn limbs_to_be(limbs: &[Limb], out: &mut [u8]) {
    for (i, byte) in out.iter_mut().rev().enumerate() {
        *byte = limbs
            .get(i / LIMB_BYTES)
            .map_or(0, |limb| (limb >> (8 * (i % LIMB_BYTES))) as u8);
    }
}

/// a < b for little-endian limbs of equal length.
fn less_than(a: &[Limb], b: &[Limb]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// a -= b, wrapping (the caller knows a >= b, or that a carried out).
fn subtract(a: &mut [Limb], b: &[Limb]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d, b1) = x.overflowing_sub(y);
        let (d, b2) = d.overflowing_sub(Limb::from(borrow));
        *x = d;
        borrow = b1 || b2;
    }
}

/// -n0^-1 mod 2^LIMB_BITS for odd n0, by Newton's iteration: n0 is its own
/// inverse mod 8 and each step doubles the correct low bits (3 -> 96).
fn negated_inverse(n0: Limb) -> Limb {
    let mut inverse = n0;
    for _ in 0..5 {
        inverse = inverse.wrapping_mul((2 as Limb).wrapping_sub(n0.wrapping_mul(inverse)));
    }
    inverse.wrapping_neg()
}
