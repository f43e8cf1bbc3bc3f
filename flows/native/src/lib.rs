//! The per-reading part of the flow's hot path, compiled.
//!
//! Python decoding a micro-batch into `Reading` objects and then pulling
//! their fields into numpy columns costs more per reading than everything
//! the flow does with those columns. Here a batch of Kafka values goes
//! straight to three columns (event time, value, device slot) with no
//! Python object per reading. Anything this fast path does not accept is
//! handed back by index, and the Python side (msgspec) decides about it, so
//! the two paths can never disagree on what is a reading.

use std::collections::HashMap;

use compact_str::CompactString;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

mod scan;
mod seen;

/// A device first seen in a batch: (batch index, device id, sensor type index, site).
type NewDevice = (usize, String, usize, String);

/// Columns of one decoded batch: ts (int64), value (float64), slot (int64),
/// seq (int64, -1 if none) as native-endian bytes for `numpy.frombuffer`,
/// the devices seen for the first time, and the indexes of values left to
/// the Python decoder.
type Columns<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Vec<NewDevice>,
    Vec<usize>,
);

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// device id -> dense slot, in order of first sight. Only devices of the
/// given sensor types get a slot; a device's type is the one it came with.
#[pyclass(module = "flows._native")]
pub struct DeviceIndex {
    // Ids up to 24 bytes stored inline in the table: one cache miss per
    // lookup instead of two (bucket, then the key's heap copy).
    slots: Map<CompactString, i64>,
    types: Map<String, usize>,
}

impl DeviceIndex {
    fn slot_of(&mut self, device_id: &str) -> (i64, bool) {
        if let Some(&slot) = self.slots.get(device_id) {
            return (slot, false);
        }
        let slot = self.slots.len() as i64;
        self.slots.insert(CompactString::from(device_id), slot);
        (slot, true)
    }
}

#[pymethods]
impl DeviceIndex {
    #[new]
    fn new(sensor_types: Vec<String>) -> Self {
        let types = sensor_types
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i))
            .collect();
        Self {
            slots: Map::default(),
            types,
        }
    }

    fn __len__(&self) -> usize {
        self.slots.len()
    }

    /// Slot of a known device.
    fn get(&self, device_id: &str) -> Option<i64> {
        self.slots.get(device_id).copied()
    }

    /// Give a new device the next slot.
    fn register(&mut self, device_id: &str) -> PyResult<i64> {
        match self.slot_of(device_id) {
            (slot, true) => Ok(slot),
            _ => Err(PyValueError::new_err(format!(
                "device {device_id} is already registered"
            ))),
        }
    }

    /// Register devices in slot order (rebuilding the index from a snapshot).
    fn extend(&mut self, device_ids: Vec<String>) -> PyResult<()> {
        for device_id in device_ids {
            self.register(&device_id)?;
        }
        Ok(())
    }

    /// Decode a batch of Kafka values (JSON readings) into columns.
    ///
    /// A value that is not bytes, not a reading in the ingester's layout, or
    /// the first reading of a device of a type not served here, is listed in
    /// the last element; its row holds ts 0, value 0.0 and slot -1 for the
    /// caller to fill or drop.
    fn decode<'py>(&mut self, py: Python<'py>, values: &Bound<'py, PyList>) -> Columns<'py> {
        let n = values.len();
        let mut ts: Vec<u8> = Vec::with_capacity(n * 8);
        let mut vals: Vec<u8> = Vec::with_capacity(n * 8);
        let mut slots: Vec<u8> = Vec::with_capacity(n * 8);
        let mut seqs: Vec<u8> = Vec::with_capacity(n * 8);
        let mut new: Vec<NewDevice> = Vec::new();
        let mut fallback: Vec<usize> = Vec::new();
        for (i, item) in values.iter().enumerate() {
            let parsed = item
                .cast::<PyBytes>()
                .ok()
                .and_then(|b| scan::reading(b.as_bytes()));
            let row = parsed.and_then(|r| {
                let slot = match self.slots.get(r.device_id) {
                    Some(&slot) => slot,
                    None => {
                        let type_index = *self.types.get(r.sensor_type)?;
                        let (slot, _) = self.slot_of(r.device_id);
                        new.push((i, r.device_id.to_owned(), type_index, r.site.to_owned()));
                        slot
                    }
                };
                Some((r.ts, r.value, slot, r.seq))
            });
            let (t, v, s, q) = row.unwrap_or_else(|| {
                fallback.push(i);
                (0, 0.0, -1, -1)
            });
            ts.extend_from_slice(&t.to_ne_bytes());
            vals.extend_from_slice(&v.to_ne_bytes());
            slots.extend_from_slice(&s.to_ne_bytes());
            seqs.extend_from_slice(&q.to_ne_bytes());
        }
        (
            PyBytes::new(py, &ts),
            PyBytes::new(py, &vals),
            PyBytes::new(py, &slots),
            PyBytes::new(py, &seqs),
            new,
            fallback,
        )
    }
}

/// int64 key -> int64 row, asked a whole column at a time (the open windows'
/// `window index * stride + slot` keys), so a batch costs one call, not a
/// dict lookup per group.
#[pyclass(module = "flows._native")]
#[derive(Default)]
pub struct KeyIndex {
    rows: Map<i64, i64>,
}

fn column(py: Python<'_>, arr: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    PyBuffer::<i64>::get(arr)?.to_vec(py)
}

#[pymethods]
impl KeyIndex {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// The row of each key, -1 where there is none (int64, native-endian bytes).
    fn get<'py>(&self, py: Python<'py>, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let keys = column(py, keys)?;
        let mut out: Vec<u8> = Vec::with_capacity(keys.len() * 8);
        for key in keys {
            out.extend_from_slice(&self.rows.get(&key).copied().unwrap_or(-1).to_ne_bytes());
        }
        Ok(PyBytes::new(py, &out))
    }

    /// Add keys that are not there yet.
    fn insert(
        &mut self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        rows: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (keys, rows) = (column(py, keys)?, column(py, rows)?);
        if keys.len() != rows.len() {
            return Err(PyValueError::new_err("keys and rows differ in length"));
        }
        for (key, row) in keys.into_iter().zip(rows) {
            if self.rows.insert(key, row).is_some() {
                return Err(PyValueError::new_err(format!("key {key} is already there")));
            }
        }
        Ok(())
    }

    /// Remove keys that are there.
    fn remove(&mut self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<()> {
        for key in column(py, keys)? {
            if self.rows.remove(&key).is_none() {
                return Err(PyValueError::new_err(format!("key {key} is not there")));
            }
        }
        Ok(())
    }
}

/// The readings each device slot has already counted (see `seen.rs`),
/// asked a whole batch at a time; pickled through `to_bytes`/`from_bytes`.
#[pyclass(module = "flows._native")]
#[derive(Default)]
pub struct SeenIndex {
    seen: seen::Seen,
}

#[pymethods]
impl SeenIndex {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    #[classattr]
    const SEQ_WINDOW: i64 = seen::SEQ_WINDOW;
    #[classattr]
    const TS_RING: usize = seen::TS_RING;

    /// 1 for each reading counted before (records the others), as uint8
    /// bytes; `seq` -1 means the reading has none and `ts` decides.
    fn duplicates<'py>(
        &mut self,
        py: Python<'py>,
        slots: &Bound<'py, PyAny>,
        seqs: &Bound<'py, PyAny>,
        ts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (slots, seqs, ts) = (column(py, slots)?, column(py, seqs)?, column(py, ts)?);
        if slots.len() != seqs.len() || slots.len() != ts.len() {
            return Err(PyValueError::new_err("columns differ in length"));
        }
        let mut out = Vec::with_capacity(slots.len());
        for ((slot, seq), t) in slots.into_iter().zip(seqs).zip(ts) {
            let slot = usize::try_from(slot).map_err(|_| PyValueError::new_err("negative slot"))?;
            out.push(u8::from(self.seen.seen(slot, seq, t)));
        }
        Ok(PyBytes::new(py, &out))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.seen.to_bytes())
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        seen::Seen::from_bytes(data)
            .map(|seen| Self { seen })
            .ok_or_else(|| PyValueError::new_err("not a SeenIndex snapshot"))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DeviceIndex>()?;
    m.add_class::<SeenIndex>()?;
    m.add_class::<KeyIndex>()?;
    Ok(())
}
