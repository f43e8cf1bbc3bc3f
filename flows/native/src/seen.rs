//! Which readings a partition has already counted, per device slot.
//!
//! QoS 1 redelivers a message whose Kafka write happened but whose MQTT
//! acknowledgement did not (an ingester killed, a broker restart), so the
//! same reading can reach a readings topic twice. Counting it twice moves a
//! window's count and mean, so the flow drops it here.
//!
//! A device that sends `seq` is judged by it: a bitmap of the last
//! `SEQ_WINDOW` sequence numbers below the highest seen. A `seq` further back
//! than that cannot be told from a genuinely old reading and is counted. A
//! device without `seq` is judged by event time: a reading whose `ts` equals
//! one of the device's last `TS_RING` timestamps is a duplicate.

const WORDS: usize = 8;
/// How far below the highest `seq` a duplicate is still recognised.
pub const SEQ_WINDOW: i64 = (WORDS * 64) as i64;
/// How many recent timestamps a device without `seq` is compared against.
pub const TS_RING: usize = WORDS;

const EMPTY: u8 = 0;
const BY_SEQ: u8 = 1;
const BY_TS: u8 = 2;
/// Bytes of one slot in `to_bytes`: mode, ring position, hi, words.
const RECORD: usize = 2 + 8 + 8 * WORDS;

#[derive(Clone, Copy, Default)]
struct Slot {
    mode: u8,
    pos: u8,
    /// BY_SEQ: the highest seq seen (bit d of `words` is seq `hi - d`).
    hi: i64,
    /// BY_SEQ: the bitmap; BY_TS: a ring of recent timestamps (as u64 bits).
    words: [u64; WORDS],
}

impl Slot {
    fn by_seq(seq: i64) -> Self {
        let mut words = [0; WORDS];
        words[0] = 1;
        Self {
            mode: BY_SEQ,
            pos: 0,
            hi: seq,
            words,
        }
    }

    fn by_ts() -> Self {
        Self {
            mode: BY_TS,
            pos: 0,
            hi: 0,
            words: [i64::MIN as u64; WORDS],
        }
    }

    /// Shift the bitmap up by `n` bits (a higher seq arrived).
    fn shift(&mut self, n: i64) {
        if n >= SEQ_WINDOW {
            self.words = [0; WORDS];
            return;
        }
        let (ws, bs) = ((n / 64) as usize, (n % 64) as u32);
        for i in (0..WORDS).rev() {
            let lo = i.checked_sub(ws).map_or(0, |j| self.words[j]);
            let below = match (bs, i.checked_sub(ws + 1)) {
                (1.., Some(j)) => self.words[j] >> (64 - bs),
                _ => 0,
            };
            self.words[i] = (lo << bs) | below;
        }
    }

    /// True if the reading was seen before; records it either way.
    fn seen_seq(&mut self, seq: i64) -> bool {
        if self.mode != BY_SEQ {
            *self = Self::by_seq(seq);
            return false;
        }
        if seq > self.hi {
            self.shift(seq - self.hi);
            self.hi = seq;
            self.words[0] |= 1;
            return false;
        }
        let d = self.hi - seq;
        if d >= SEQ_WINDOW {
            return false; // too far back to tell: counted
        }
        let (w, b) = ((d / 64) as usize, d % 64);
        let seen = self.words[w] >> b & 1 == 1;
        self.words[w] |= 1 << b;
        seen
    }

    fn seen_ts(&mut self, ts: i64) -> bool {
        if self.mode != BY_TS {
            *self = Self::by_ts();
        }
        let bits = ts as u64;
        if self.words.contains(&bits) {
            return true;
        }
        self.words[self.pos as usize] = bits;
        self.pos = ((self.pos as usize + 1) % TS_RING) as u8;
        false
    }
}

/// Every slot's record of what was counted.
#[derive(Default)]
pub struct Seen {
    slots: Vec<Slot>,
}

impl Seen {
    /// True if this reading of `slot` was counted before (`seq` -1 = none).
    pub fn seen(&mut self, slot: usize, seq: i64, ts: i64) -> bool {
        if slot >= self.slots.len() {
            self.slots
                .resize((slot + 1).max(self.slots.len() * 2), Slot::default());
        }
        let entry = &mut self.slots[slot];
        if seq >= 0 {
            entry.seen_seq(seq)
        } else {
            entry.seen_ts(ts)
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.slots.len() * RECORD);
        for s in &self.slots {
            out.push(s.mode);
            out.push(s.pos);
            out.extend_from_slice(&s.hi.to_le_bytes());
            for w in s.words {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        if !data.len().is_multiple_of(RECORD) {
            return None;
        }
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let slots = data
            .chunks_exact(RECORD)
            .map(|r| {
                let mut words = [0; WORDS];
                for (i, w) in words.iter_mut().enumerate() {
                    *w = word(&r[10 + 8 * i..18 + 8 * i]);
                }
                let mode = if r[0] <= BY_TS { r[0] } else { EMPTY };
                Slot {
                    mode,
                    pos: r[1] % TS_RING as u8,
                    hi: word(&r[2..10]) as i64,
                    words,
                }
            })
            .collect();
        Some(Self { slots })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_duplicates_within_the_window() {
        let mut s = Seen::default();
        for q in 0..1000 {
            assert!(!s.seen(3, q, q));
        }
        for q in (1000 - SEQ_WINDOW)..1000 {
            assert!(s.seen(3, q, 0), "seq {q}");
        }
        assert!(!s.seen(3, 1000 - SEQ_WINDOW - 1, 0)); // too far back: counted
        assert!(!s.seen(3, 5000, 0));
        assert!(!s.seen(3, 4999, 0)); // a gap is not a duplicate
        assert!(s.seen(3, 4999, 0));
    }

    #[test]
    fn out_of_order_and_round_trip() {
        let mut s = Seen::default();
        for q in [10, 7, 12, 8, 7, 10, 200, 9, 8] {
            s.seen(0, q, 0);
        }
        let mut r = Seen::from_bytes(&s.to_bytes()).unwrap();
        for q in [7, 8, 9, 10, 12, 200] {
            assert!(r.seen(0, q, 0));
        }
        assert!(!r.seen(0, 11, 0));
    }

    #[test]
    fn without_seq_by_recent_timestamps() {
        let mut s = Seen::default();
        for t in 0..20 {
            assert!(!s.seen(1, -1, t));
        }
        for t in 12..20 {
            assert!(s.seen(1, -1, t));
        }
    }
}
