//! The requests holding one KV block (its reference count is their number).

use crate::ids::RequestId;

/// Almost every block has exactly one holder; only shared prefix blocks have
/// more. The first holder lives inline, so taking and releasing a block
/// reads no memory outside the block (a simulation does that for every
/// block of every request); further holders spill to a vector.
#[derive(Clone, Debug, Default)]
pub(crate) struct Holders {
    first: Option<RequestId>,
    /// Empty unless `first` is set; boxed so that the common case costs one
    /// pointer in the block, not a vector's three words.
    #[allow(clippy::box_collection, reason = "a thin pointer keeps the block in one cache line")]
    more: Option<Box<Vec<RequestId>>>,
}

impl Holders {
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.as_ref().map_or(0, |more| more.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn push(&mut self, holder: RequestId) {
        match self.first {
            None => self.first = Some(holder),
            Some(_) => self.more.get_or_insert_with(Default::default).push(holder),
        }
    }

    /// Drops `holder`; false if it did not hold the block.
    pub(crate) fn remove(&mut self, holder: RequestId) -> bool {
        if self.first == Some(holder) {
            self.first = self.more.as_mut().and_then(|more| more.pop());
            return true;
        }
        let Some(more) = self.more.as_mut() else { return false };
        match more.iter().position(|h| *h == holder) {
            Some(pos) => {
                more.swap_remove(pos);
                true
            }
            None => false,
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<RequestId> {
        self.first.iter().chain(self.more.iter().flat_map(|more| more.iter())).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_come_and_go_in_any_order() {
        let mut h = Holders::default();
        assert!(h.is_empty());
        for id in [1, 2, 3] {
            h.push(RequestId(id));
        }
        assert_eq!(h.len(), 3);
        assert!(h.remove(RequestId(1)) && h.remove(RequestId(3)));
        assert!(!h.remove(RequestId(7)));
        assert_eq!(h.to_vec(), vec![RequestId(2)]);
        assert!(h.remove(RequestId(2)) && h.is_empty());
        assert_eq!(h.len(), 0);
    }
}
