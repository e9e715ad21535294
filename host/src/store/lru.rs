//! The recency order of the memory store's paths: a doubly linked list in a slab, so
//! touching a path (every cache hit), adding one and removing one are O(1), with no
//! allocation once the slab has grown to the number of paths held.

/// A slot in the list, handed out by [`Lru::push_front`] and kept by its owner.
pub type Slot = usize;

const NIL: usize = usize::MAX;

struct Node {
    key: String,
    prev: usize,
    next: usize,
}

/// Keys from most (front) to least (back) recently used.
#[derive(Default)]
pub struct Lru {
    nodes: Vec<Node>,
    /// Slots of removed nodes, reused first.
    free: Vec<usize>,
    head: Option<usize>,
    tail: Option<usize>,
    len: usize,
}

impl Lru {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds `key` as the most recently used; its slot.
    pub fn push_front(&mut self, key: String) -> Slot {
        let node = Node {
            key,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.link_front(slot);
        self.len += 1;
        slot
    }

    /// Makes `slot` the most recently used.
    pub fn touch(&mut self, slot: Slot) {
        if self.head == Some(slot) {
            return;
        }
        self.unlink(slot);
        self.link_front(slot);
    }

    /// Removes `slot`; its key.
    pub fn remove(&mut self, slot: Slot) -> String {
        self.unlink(slot);
        self.free.push(slot);
        self.len -= 1;
        std::mem::take(&mut self.nodes[slot].key)
    }

    /// The least recently used slot and its key.
    pub fn back(&self) -> Option<(Slot, &str)> {
        self.tail.map(|slot| (slot, self.nodes[slot].key.as_str()))
    }

    fn link_front(&mut self, slot: usize) {
        self.nodes[slot].prev = NIL;
        self.nodes[slot].next = self.head.unwrap_or(NIL);
        match self.head {
            Some(old) => self.nodes[old].prev = slot,
            None => self.tail = Some(slot),
        }
        self.head = Some(slot);
    }

    fn unlink(&mut self, slot: usize) {
        let (prev, next) = (self.nodes[slot].prev, self.nodes[slot].next);
        match prev {
            NIL => self.head = (next != NIL).then_some(next),
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = (prev != NIL).then_some(prev),
            n => self.nodes[n].prev = prev,
        }
        self.nodes[slot].prev = NIL;
        self.nodes[slot].next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    fn order(lru: &Lru) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = lru.head;
        while let Some(slot) = at {
            out.push(lru.nodes[slot].key.clone());
            at = (lru.nodes[slot].next != super::NIL).then_some(lru.nodes[slot].next);
        }
        out
    }

    #[test]
    fn least_recently_used_is_at_the_back() {
        let mut lru = Lru::default();
        let a = lru.push_front("a".into());
        let b = lru.push_front("b".into());
        let c = lru.push_front("c".into());
        assert_eq!(order(&lru), ["c", "b", "a"]);
        assert_eq!(lru.back(), Some((a, "a")));
        lru.touch(a);
        assert_eq!(order(&lru), ["a", "c", "b"]);
        assert_eq!(lru.back(), Some((b, "b")));
        lru.touch(a);
        assert_eq!(order(&lru), ["a", "c", "b"]);
        assert_eq!(lru.remove(c), "c");
        assert_eq!(order(&lru), ["a", "b"]);
        // A freed slot is reused.
        let d = lru.push_front("d".into());
        assert_eq!(d, c);
        assert_eq!(order(&lru), ["d", "a", "b"]);
        assert_eq!(lru.remove(b), "b");
        assert_eq!(lru.remove(d), "d");
        assert_eq!(lru.back(), Some((a, "a")));
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.remove(a), "a");
        assert_eq!(lru.back(), None);
        assert_eq!(lru.len(), 0);
        lru.push_front("e".into());
        assert_eq!(order(&lru), ["e"]);
    }
}
