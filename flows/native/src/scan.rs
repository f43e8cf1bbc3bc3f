//! Reads the one layout the ingester writes: a Reading as msgspec encodes it.
//!
//! `{"device_id":"…","sensor_type":"…"[,"site":"…"],"ts":…,"value":…[,"seq":…][,"unit":"…"][,"ingest_ts":…]}`:
//! fields in declaration order, no whitespace, optional fields left out when
//! unset. Anything else (another producer's key order, spaces, escapes, odd
//! numbers) is answered with `None` and the caller hands it to msgspec, which
//! has the last word on what is a reading. So this only has to be right about
//! what it accepts; tests/unit/test_native.py holds it to msgspec.
//!
//! Ids are held to the same full-match rules as `iotpipe/topics.py`
//! (`[A-Za-z0-9_.:-]{1,64}`, types `[a-z0-9_]{1,64}`) and `seq` to
//! `0..=2^53-1`; anything else goes to msgspec, which refuses it.

/// The largest `seq` accepted (`iotpipe.topics.MAX_SEQ`).
pub const MAX_SEQ: i64 = (1 << 53) - 1;
const MAX_ID: usize = 64;

/// The fields the flow needs from one reading, borrowed from the input.
pub struct Fields<'a> {
    pub device_id: &'a str,
    pub sensor_type: &'a str,
    pub site: &'a str,
    pub ts: i64,
    pub value: f64,
    /// -1 when the reading has none.
    pub seq: i64,
}

fn id_ok(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn type_ok(name: &str) -> bool {
    (1..=MAX_ID).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Step over `text` if it comes next.
    fn lit(&mut self, text: &[u8]) -> Option<()> {
        self.buf[self.pos..]
            .starts_with(text)
            .then(|| self.pos += text.len())
    }

    /// The rest of a string whose opening quote was matched: no escapes, no
    /// control characters. The buffer is UTF-8 as a whole and a quote (ASCII)
    /// sits on a character boundary, so the slice is valid UTF-8 too.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let len = self.buf[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.buf[start + len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        std::str::from_utf8(&self.buf[start..start + len]).ok()
    }

    fn digits(&mut self) -> usize {
        let len = self.buf[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += len;
        len
    }

    /// A JSON integer that surely fits i64 (at most 18 digits), not followed
    /// by a fraction or exponent.
    fn int(&mut self) -> Option<i64> {
        let negative = self.lit(b"-").is_some();
        let start = self.pos;
        let len = self.digits();
        let digits = &self.buf[start..self.pos];
        if len == 0 || len > 18 || (len > 1 && digits[0] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.buf.get(self.pos) {
            return None;
        }
        let n = digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        Some(if negative { -n } else { n })
    }

    /// A JSON number as a finite f64, correctly rounded (as msgspec rounds).
    /// Integers only up to 15 digits, where every reader agrees exactly.
    fn float(&mut self) -> Option<f64> {
        let start = self.pos;
        self.lit(b"-");
        let int_start = self.pos;
        let int_len = self.digits();
        if int_len == 0 || (int_len > 1 && self.buf[int_start] == b'0') {
            return None;
        }
        let mut integer = true;
        if self.lit(b".").is_some() {
            if self.digits() == 0 {
                return None;
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = self.buf.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.buf.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            integer = false;
        }
        if integer && int_len > 15 {
            return None;
        }
        let token = std::str::from_utf8(&self.buf[start..self.pos]).ok()?;
        let value = token.parse::<f64>().ok().filter(|v| v.is_finite())?;
        // msgspec reads the JSON integer `-0` as the int 0, so as the float +0.0.
        Some(if integer && value == 0.0 { 0.0 } else { value })
    }
}

/// The reading in `buf`, or `None` if it is not one in the ingester's layout.
pub fn reading(buf: &[u8]) -> Option<Fields<'_>> {
    if !buf.is_ascii() {
        std::str::from_utf8(buf).ok()?; // msgspec refuses invalid UTF-8 anywhere
    }
    let mut c = Cursor { buf, pos: 0 };
    c.lit(b"{\"device_id\":\"")?;
    let device_id = c.string().filter(|id| id_ok(id))?;
    c.lit(b",\"sensor_type\":\"")?;
    let sensor_type = c.string().filter(|name| type_ok(name))?;
    let site = match c.lit(b",\"site\":\"") {
        Some(()) => c.string().filter(|id| id_ok(id))?,
        None => "default",
    };
    c.lit(b",\"ts\":")?;
    let ts = c.int()?;
    c.lit(b",\"value\":")?;
    let value = c.float()?;
    let mut seq = -1;
    if c.lit(b",\"seq\":").is_some() {
        seq = c.int().filter(|n| (0..=MAX_SEQ).contains(n))?;
    }
    if c.lit(b",\"unit\":\"").is_some() {
        c.string()?;
    }
    if c.lit(b",\"ingest_ts\":").is_some() {
        c.int()?;
    }
    c.lit(b"}")?;
    (c.pos == buf.len()).then_some(Fields {
        device_id,
        sensor_type,
        site,
        ts,
        value,
        seq,
    })
}
