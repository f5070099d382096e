//! What the grader checks, and how it reports the first thing that broke.

use kvscope_core::{BlockId, RequestId};
use serde::Serialize;
use std::fmt;

/// The properties `kvscope exercise check` grades, each a promise of the
/// KV lifecycle that a block manager must keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// (a) every block in a table is held: its ref count is the number of
    /// tables that hold it, and it is not on the free list.
    RefCounts,
    /// (b) no block is written by two requests unless both share an
    /// identical full prefix block.
    ExclusiveWrites,
    /// (c) a claimed prefix hit holds the KV of identical tokens (the same
    /// prefix, already computed).
    PrefixHits,
    /// (d) released blocks come back to the free list; the pool is whole at
    /// the end.
    Release,
    /// (e) greedy outputs are identical to the native block manager's.
    Outputs,
    /// (f) every token the engine computes has a slot: tables are long
    /// enough, with valid block ids, when the engine needs them.
    Slots,
}

impl Property {
    pub const ALL: [Property; 6] = [
        Property::RefCounts,
        Property::ExclusiveWrites,
        Property::PrefixHits,
        Property::Release,
        Property::Outputs,
        Property::Slots,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Property::RefCounts => "(a) ref counts",
            Property::ExclusiveWrites => "(b) exclusive writes",
            Property::PrefixHits => "(c) prefix hits",
            Property::Release => "(d) release",
            Property::Outputs => "(e) outputs",
            Property::Slots => "(f) slots",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Property::RefCounts => "ref_count = number of block tables holding the block; held blocks are never free",
            Property::ExclusiveWrites => {
                "no block is written by two requests unless they share an identical full prefix"
            }
            Property::PrefixHits => "a prefix hit reuses KV computed for exactly the same tokens (same prefix)",
            Property::Release => "released blocks come back to free_block_ids; the pool is whole at the end",
            Property::Outputs => "greedy outputs are identical to kvscope's native block manager",
            Property::Slots => "every token has a slot when its KV is computed (allocate / may_append on time)",
        }
    }
}

/// One broken promise (or a crash), located as precisely as the grader can.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// `None`: the student's code raised, hung or broke the call contract,
    /// so the properties could not be checked past this point.
    pub property: Option<Property>,
    pub workload: String,
    pub step: u64,
    pub request: Option<RequestId>,
    /// The student's method that was running (or had just run).
    pub call: String,
    pub expected: String,
    pub actual: String,
    /// What in the code most likely causes it.
    pub hint: String,
}

impl Finding {
    pub fn new(property: Option<Property>, call: impl Into<String>) -> Self {
        Finding {
            property,
            workload: String::new(),
            step: 0,
            request: None,
            call: call.into(),
            expected: String::new(),
            actual: String::new(),
            hint: String::new(),
        }
    }
    pub fn request(mut self, id: RequestId) -> Self {
        self.request = Some(id);
        self
    }
    pub fn expected(mut self, s: impl Into<String>) -> Self {
        self.expected = s.into();
        self
    }
    pub fn actual(mut self, s: impl Into<String>) -> Self {
        self.actual = s.into();
        self
    }
    pub fn hint(mut self, s: impl Into<String>) -> Self {
        self.hint = s.into();
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.property.map_or("your code failed", Property::label);
        write!(f, "{what}: workload {}, step {}", self.workload, self.step)?;
        if let Some(r) = self.request {
            write!(f, ", request {r}")?;
        }
        writeln!(f, ", call {}", self.call)?;
        if !self.expected.is_empty() {
            writeln!(f, "  expected: {}", self.expected)?;
        }
        if !self.actual.is_empty() {
            writeln!(f, "  actual:   {}", self.actual)?;
        }
        if !self.hint.is_empty() {
            writeln!(f, "  hint:     {}", self.hint)?;
        }
        Ok(())
    }
}

/// Block ids as the student's Python prints them: `[2, 3]`.
pub(crate) fn ids(table: &[BlockId]) -> String {
    let list: Vec<String> = table.iter().map(|b| b.0.to_string()).collect();
    format!("[{}]", list.join(", "))
}
