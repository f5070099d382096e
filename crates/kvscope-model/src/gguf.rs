//! A reader for GGUF v2/v3 files: metadata, tensor infos, tensor bytes.
//!
//! The file is memory-mapped, parsed with bounds checks on every read, and
//! rejected with an error that names what is wrong: a truncated download or a
//! file that is not GGUF must never panic the engine.

use crate::quant::{self, GgmlType, QuantError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal GGUF; deeper nesting than this is corruption.
const MAX_ARRAY_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}; check the path (or pass --model PATH)")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a GGUF file (magic bytes {found:02x?}, expected \"GGUF\"); pass a .gguf model file")]
    BadMagic { found: [u8; 4] },
    #[error("GGUF version {0} is not supported (this reader handles v2 and v3); re-convert the model with a current llama.cpp")]
    UnsupportedVersion(u32),
    #[error(
        "GGUF file is truncated or corrupt: {what} at byte {at} runs past the end ({len} bytes); re-download the file"
    )]
    Truncated { what: String, at: usize, len: usize },
    #[error("GGUF file is corrupt: {0}; re-download the file")]
    Corrupt(String),
    #[error("tensor {name}: {source}")]
    Tensor { name: String, source: QuantError },
    #[error("the model has no tensor named {0}; is this a supported architecture?")]
    MissingTensor(String),
    #[error("metadata key {key}: {problem}")]
    Metadata { key: String, problem: String },
}

/// One metadata value, of any GGUF value type.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// Any non-negative integer value, widened.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) if v >= 0 => Some(v as u64),
            MetaValue::I16(v) if v >= 0 => Some(v as u64),
            MetaValue::I32(v) if v >= 0 => Some(v as u64),
            MetaValue::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v as i64),
            MetaValue::I16(v) => Some(v as i64),
            MetaValue::I32(v) => Some(v as i64),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where a tensor lives in the file and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    pub n_elems: usize,
    pub n_bytes: usize,
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file.
pub struct Gguf {
    pub version: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    bytes: Bytes,
    data_start: usize,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Memory-map and parse a GGUF file.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file changed underneath us while
        // mapped could yield odd values, which every parse step bounds-checks.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(Bytes::Mapped(map))
    }

    /// Parse a GGUF image held in memory (tests build these by hand).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(Bytes::Owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<Self, GgufError> {
        let buf = bytes.as_slice();
        let mut r = Reader { buf, pos: 0 };
        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            let mut found = [0u8; 4];
            found.copy_from_slice(magic);
            return Err(GgufError::BadMagic { found });
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1
        // bytes, each tensor info at least 8 + 4 + 8 + 4 + 8.
        r.check_count(n_kv, 13, "metadata count")?;
        r.check_count(n_tensors, 32, "tensor count")?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32("metadata value type")?;
            let value = r.value(ty, &key, 0)?;
            meta_index.insert(key.clone(), metadata.len());
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment") {
            Some(&i) => {
                let a = metadata[i].1.as_u64().unwrap_or(0);
                if a == 0 || !a.is_power_of_two() {
                    return Err(GgufError::Corrupt(format!("general.alignment {a} is not a power of two")));
                }
                a
            }
            None => DEFAULT_ALIGNMENT,
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::new();
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor dimension count")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Corrupt(format!("tensor {name} has {n_dims} dimensions (1..=4 allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut n_elems: u64 = 1;
            for _ in 0..n_dims {
                let d = r.u64("tensor dimension")?;
                n_elems = n_elems
                    .checked_mul(d)
                    .filter(|&n| n <= buf.len() as u64 * 2)
                    .ok_or_else(|| GgufError::Corrupt(format!("tensor {name} has absurd dimensions")))?;
                dims.push(d);
            }
            let ty_id = r.u32("tensor type")?;
            let ty = GgmlType::from_id(ty_id).map_err(|source| GgufError::Tensor { name: name.clone(), source })?;
            let offset = r.u64("tensor offset")?;
            if offset % alignment != 0 {
                return Err(GgufError::Corrupt(format!("tensor {name} offset {offset} is not aligned to {alignment}")));
            }
            let n_elems = n_elems as usize;
            if !(dims[0] as usize).is_multiple_of(ty.block_elems()) {
                return Err(GgufError::Corrupt(format!(
                    "tensor {name} rows of {} do not fill whole {ty:?} blocks",
                    dims[0]
                )));
            }
            let n_bytes = ty.bytes_for(n_elems).map_err(|source| GgufError::Tensor { name: name.clone(), source })?;
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::Corrupt(format!("tensor {name} appears twice")));
            }
            tensors.push(TensorInfo { name, dims, ty, offset, n_elems, n_bytes });
        }

        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let data_len = (buf.len() as u64).saturating_sub(data_start);
        for t in &tensors {
            let end = t.offset.checked_add(t.n_bytes as u64);
            if end.is_none_or(|e| e > data_len) {
                return Err(GgufError::Truncated {
                    what: format!("data of tensor {} ({} bytes at data offset {})", t.name, t.n_bytes, t.offset),
                    at: (data_start + t.offset) as usize,
                    len: buf.len(),
                });
            }
        }
        let data_start = data_start as usize;
        Ok(Gguf { version, metadata, meta_index, tensors, tensor_index, bytes, data_start })
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor, as stored.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let t = self.tensor_info(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let start = self.data_start + t.offset as usize;
        Ok(&self.bytes.as_slice()[start..start + t.n_bytes])
    }

    /// A tensor dequantized to f32, in ggml order (row-major over `dims[0]`).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let t = self.tensor_info(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let mut out = vec![0f32; t.n_elems];
        quant::dequantize(t.ty, self.tensor_bytes(name)?, &mut out)
            .map_err(|source| GgufError::Tensor { name: name.to_string(), source })?;
        Ok(out)
    }
}

/// Bounds-checked little-endian cursor over the file image.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufError::Truncated { what: what.to_string(), at: self.pos, len: self.buf.len() }),
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reject counts that could not fit in the rest of the file even at
    /// `min_size` bytes per item, before allocating for them.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), GgufError> {
        if count.saturating_mul(min_size) > self.remaining() as u64 {
            return Err(GgufError::Corrupt(format!(
                "{what} {count} cannot fit in the remaining {} bytes",
                self.remaining()
            )));
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        self.check_count(len, 1, &format!("{what} length"))?;
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::Corrupt(format!("{what} at byte {} is not valid UTF-8", self.pos - len as usize)))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue, GgufError> {
        let w = key;
        Ok(match ty {
            0 => MetaValue::U8(u8::from_le_bytes(self.array(w)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(w)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(w)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(w)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array(w)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(w)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(w)?)),
            7 => match self.array::<1>(w)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(GgufError::Corrupt(format!("metadata {key}: bool byte {b}"))),
            },
            8 => MetaValue::Str(self.string(w)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Corrupt(format!("metadata {key}: arrays nested too deep")));
                }
                let elem_ty = self.u32(w)?;
                let len = self.u64(w)?;
                let min_size = match elem_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => {
                        return Err(GgufError::Corrupt(format!("metadata {key}: unknown array element type {other}")))
                    }
                };
                self.check_count(len, min_size, &format!("metadata {key} array length"))?;
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.array(w)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(w)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(w)?)),
            other => return Err(GgufError::Corrupt(format!("metadata {key}: unknown value type {other}"))),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes GGUF images for tests.
    pub struct GgufWriter {
        meta: Vec<u8>,
        n_kv: u64,
        infos: Vec<u8>,
        data: Vec<u8>,
        n_tensors: u64,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    impl GgufWriter {
        pub fn new() -> Self {
            GgufWriter { meta: vec![], n_kv: 0, infos: vec![], data: vec![], n_tensors: 0 }
        }
        pub fn raw_kv(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
            put_str(&mut self.meta, key);
            self.meta.extend(ty.to_le_bytes());
            self.meta.extend(value);
            self.n_kv += 1;
            self
        }
        pub fn u32(&mut self, key: &str, v: u32) -> &mut Self {
            self.raw_kv(key, 4, &v.to_le_bytes())
        }
        pub fn f32(&mut self, key: &str, v: f32) -> &mut Self {
            self.raw_kv(key, 6, &v.to_le_bytes())
        }
        pub fn str(&mut self, key: &str, v: &str) -> &mut Self {
            let mut b = vec![];
            put_str(&mut b, v);
            self.raw_kv(key, 8, &b)
        }
        pub fn str_array(&mut self, key: &str, vs: &[&str]) -> &mut Self {
            let mut b = 8u32.to_le_bytes().to_vec();
            b.extend((vs.len() as u64).to_le_bytes());
            for v in vs {
                put_str(&mut b, v);
            }
            self.raw_kv(key, 9, &b)
        }
        pub fn i32_array(&mut self, key: &str, vs: &[i32]) -> &mut Self {
            let mut b = 5u32.to_le_bytes().to_vec();
            b.extend((vs.len() as u64).to_le_bytes());
            for v in vs {
                b.extend(v.to_le_bytes());
            }
            self.raw_kv(key, 9, &b)
        }
        pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, bytes: &[u8]) -> &mut Self {
            while !self.data.len().is_multiple_of(32) {
                self.data.push(0);
            }
            put_str(&mut self.infos, name);
            self.infos.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                self.infos.extend(d.to_le_bytes());
            }
            self.infos.extend(ty.id().to_le_bytes());
            self.infos.extend((self.data.len() as u64).to_le_bytes());
            self.data.extend(bytes);
            self.n_tensors += 1;
            self
        }
        pub fn f32_tensor(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
            let b: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.tensor(name, dims, GgmlType::F32, &b)
        }
        pub fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(3u32.to_le_bytes());
            out.extend(self.n_tensors.to_le_bytes());
            out.extend(self.n_kv.to_le_bytes());
            out.extend(&self.meta);
            out.extend(&self.infos);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
            out.extend(&self.data);
            out
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.str("general.architecture", "llama")
            .u32("llama.block_count", 2)
            .f32("llama.rope.freq_base", 10000.0)
            .str_array("tokenizer.ggml.tokens", &["a", "b", "<|x|>"])
            .i32_array("tokenizer.ggml.token_type", &[1, 1, 3])
            .raw_kv("flag", 7, &[1])
            .raw_kv("big", 10, &u64::MAX.to_le_bytes())
            .raw_kv("neg", 11, &(-5i64).to_le_bytes())
            .raw_kv("dbl", 12, &2.5f64.to_le_bytes())
            .raw_kv("small", 0, &[7])
            .raw_kv("sneg", 3, &(-3i16).to_le_bytes())
            .f32_tensor("w", &[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let mut q8 = 0x3800u16.to_le_bytes().to_vec(); // d = 0.5
        q8.extend((0..32).map(|j| j as u8));
        w.tensor("q", &[32], GgmlType::Q8_0, &q8);
        w.build()
    }

    #[test]
    fn reads_metadata_of_every_type_and_tensors() {
        let g = Gguf::from_bytes(sample()).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.get("general.architecture").unwrap().as_str(), Some("llama"));
        assert_eq!(g.get("llama.block_count").unwrap().as_u64(), Some(2));
        assert_eq!(g.get("llama.rope.freq_base").unwrap().as_f64(), Some(10000.0));
        let toks = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
        assert_eq!(toks[2].as_str(), Some("<|x|>"));
        let types = g.get("tokenizer.ggml.token_type").unwrap().as_array().unwrap();
        assert_eq!(types[2].as_i64(), Some(3));
        assert_eq!(g.get("flag").unwrap().as_bool(), Some(true));
        assert_eq!(g.get("big").unwrap().as_u64(), Some(u64::MAX));
        assert_eq!(g.get("neg").unwrap().as_i64(), Some(-5));
        assert_eq!(g.get("dbl").unwrap().as_f64(), Some(2.5));
        assert_eq!(g.get("small").unwrap().as_u64(), Some(7));
        assert_eq!(g.get("sneg").unwrap().as_i64(), Some(-3));
        assert_eq!(g.metadata()[0].0, "general.architecture");

        let t = g.tensor_info("w").unwrap();
        assert_eq!((t.dims.clone(), t.ty, t.n_elems), (vec![2, 3], GgmlType::F32, 6));
        assert_eq!(g.tensor_f32("w").unwrap(), vec![1., 2., 3., 4., 5., 6.]);
        let q = g.tensor_f32("q").unwrap();
        assert_eq!(q[31], 15.5);
        assert!(matches!(g.tensor_f32("nope"), Err(GgufError::MissingTensor(_))));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = sample();
        for cut in 0..full.len() {
            assert!(Gguf::from_bytes(full[..cut].to_vec()).is_err(), "cut at {cut} parsed");
        }
    }

    #[test]
    fn bad_magic_and_version_are_named() {
        let mut b = sample();
        b[0] = b'X';
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::BadMagic { .. })));
        let mut b = sample();
        b[4] = 1;
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::UnsupportedVersion(1))));
    }

    #[test]
    fn absurd_counts_are_rejected_before_allocating() {
        let mut b = sample();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::Corrupt(_))));
        let mut b = sample();
        b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes()); // kv count
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::Corrupt(_))));
        let mut w = GgufWriter::new();
        let mut arr = 4u32.to_le_bytes().to_vec();
        arr.extend((1u64 << 50).to_le_bytes());
        w.raw_kv("huge", 9, &arr);
        assert!(matches!(Gguf::from_bytes(w.build()), Err(GgufError::Corrupt(_))));
    }

    #[test]
    fn unknown_types_and_offsets_past_the_end_are_errors() {
        let mut w = GgufWriter::new();
        w.raw_kv("k", 99, &[0; 8]);
        assert!(matches!(Gguf::from_bytes(w.build()), Err(GgufError::Corrupt(_))));

        let mut w = GgufWriter::new();
        w.tensor("t", &[32], GgmlType::Q8_0, &[0; 34]);
        let mut b = w.build();
        // the only [8, 0, 0, 0] in the image is the Q8_0 type id
        let pos = b.windows(4).rposition(|x| x == 8u32.to_le_bytes()).unwrap();
        b[pos..pos + 4].copy_from_slice(&14u32.to_le_bytes()); // Q6_K
        let err = Gguf::from_bytes(b).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");

        let mut w = GgufWriter::new();
        w.f32_tensor("t", &[4], &[0.; 4]);
        let mut b = w.build();
        b.truncate(b.len() - 1);
        assert!(matches!(Gguf::from_bytes(b), Err(GgufError::Truncated { .. })));
    }
}
