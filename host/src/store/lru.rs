//! The eviction order of the memory store's paths: a segmented LRU. A path enters on
//! probation; its first cache hit moves it to the protected segment, which holds at
//! most four fifths of the paths (the least recently used protected path goes back on
//! probation past that). Eviction takes the least recently used path on probation
//! first. So a client that asks for thousands of distinct parameter sets once each (a
//! scan) churns only the probation segment, and the paths Prometheus polls over and
//! over stay cached; with a plain LRU such a scan evicted every one of them.
//!
//! Both segments are doubly linked lists in one slab, so a hit, an insert and a
//! removal are O(1), with no allocation once the slab has grown to the number of
//! paths held.

/// A slot in the lists, handed out by [`Lru::push_front`] and kept by its owner.
pub type Slot = usize;

const NIL: usize = usize::MAX;

/// Which list a node is on.
const PROBATION: usize = 0;
const PROTECTED: usize = 1;

struct Node {
    key: String,
    prev: usize,
    next: usize,
    segment: usize,
}

#[derive(Default, Clone, Copy)]
struct List {
    head: Option<usize>,
    tail: Option<usize>,
    len: usize,
}

/// Keys in two segments, each from most (front) to least (back) recently used.
#[derive(Default)]
pub struct Lru {
    nodes: Vec<Node>,
    /// Slots of removed nodes, reused first.
    free: Vec<usize>,
    lists: [List; 2],
}

impl Lru {
    pub fn len(&self) -> usize {
        self.lists[PROBATION].len + self.lists[PROTECTED].len
    }

    /// Adds `key` at the front of the probation segment; its slot.
    pub fn push_front(&mut self, key: String) -> Slot {
        let node = Node {
            key,
            prev: NIL,
            next: NIL,
            segment: PROBATION,
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
        self.link_front(slot, PROBATION);
        slot
    }

    /// A use of `slot` (a cache hit): it becomes the most recently used protected path.
    pub fn touch(&mut self, slot: Slot) {
        if self.lists[PROTECTED].head == Some(slot) {
            return;
        }
        self.unlink(slot);
        self.link_front(slot, PROTECTED);
        // Keep a fifth of the paths on probation, so new paths have room to prove
        // themselves before they are the next to go.
        let max_protected = self.len() - self.len() / 5;
        while self.lists[PROTECTED].len > max_protected.max(1) {
            let Some(back) = self.lists[PROTECTED].tail else {
                break;
            };
            self.unlink(back);
            self.link_front(back, PROBATION);
        }
    }

    /// Moves `slot` to the front of the segment it is in, without counting a use: a
    /// new result written for it, or a path passed over by eviction.
    pub fn refresh(&mut self, slot: Slot) {
        let segment = self.nodes[slot].segment;
        if self.lists[segment].head == Some(slot) {
            return;
        }
        self.unlink(slot);
        self.link_front(slot, segment);
    }

    /// Removes `slot`; its key.
    pub fn remove(&mut self, slot: Slot) -> String {
        self.unlink(slot);
        self.free.push(slot);
        std::mem::take(&mut self.nodes[slot].key)
    }

    /// The least recently used path of one segment; the store evicts from probation
    /// first.
    pub fn back_of(&self, protected: bool) -> Option<(Slot, &str)> {
        self.lists[usize::from(protected)]
            .tail
            .map(|slot| (slot, self.nodes[slot].key.as_str()))
    }

    /// Paths in one segment.
    pub fn len_of(&self, protected: bool) -> usize {
        self.lists[usize::from(protected)].len
    }

    pub fn is_protected(&self, slot: Slot) -> bool {
        self.nodes[slot].segment == PROTECTED
    }

    fn link_front(&mut self, slot: usize, segment: usize) {
        let list = &mut self.lists[segment];
        let old_head = list.head;
        list.head = Some(slot);
        if old_head.is_none() {
            list.tail = Some(slot);
        }
        list.len += 1;
        let node = &mut self.nodes[slot];
        node.segment = segment;
        node.prev = NIL;
        node.next = old_head.unwrap_or(NIL);
        if let Some(old) = old_head {
            self.nodes[old].prev = slot;
        }
    }

    fn unlink(&mut self, slot: usize) {
        let (prev, next, segment) = {
            let n = &self.nodes[slot];
            (n.prev, n.next, n.segment)
        };
        let list = &mut self.lists[segment];
        list.len -= 1;
        match prev {
            NIL => list.head = (next != NIL).then_some(next),
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.lists[segment].tail = (prev != NIL).then_some(prev),
            n => self.nodes[n].prev = prev,
        }
        self.nodes[slot].prev = NIL;
        self.nodes[slot].next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::{Lru, PROBATION, PROTECTED, Slot};

    /// The next path to evict.
    fn back(lru: &Lru) -> Option<(Slot, &str)> {
        lru.back_of(false).or_else(|| lru.back_of(true))
    }

    fn order(lru: &Lru, segment: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = lru.lists[segment].head;
        while let Some(slot) = at {
            out.push(lru.nodes[slot].key.clone());
            at = (lru.nodes[slot].next != super::NIL).then_some(lru.nodes[slot].next);
        }
        out
    }

    #[test]
    fn new_paths_go_first_and_a_hit_protects() {
        let mut lru = Lru::default();
        let a = lru.push_front("a".into());
        let b = lru.push_front("b".into());
        let c = lru.push_front("c".into());
        assert_eq!(order(&lru, PROBATION), ["c", "b", "a"]);
        assert_eq!(back(&lru), Some((a, "a")));
        lru.touch(a);
        assert_eq!(order(&lru, PROTECTED), ["a"]);
        assert_eq!(back(&lru), Some((b, "b")), "probation goes first");
        // A refresh is not a use: it stays on probation, at its front.
        lru.refresh(b);
        assert_eq!(order(&lru, PROBATION), ["b", "c"]);
        assert_eq!(back(&lru), Some((c, "c")));
        assert_eq!(lru.remove(c), "c");
        // A freed slot is reused.
        let d = lru.push_front("d".into());
        assert_eq!(d, c);
        assert_eq!(order(&lru, PROBATION), ["d", "b"]);
        assert_eq!(lru.len(), 3);
        for slot in [b, d] {
            lru.remove(slot);
        }
        assert_eq!(back(&lru), Some((a, "a")), "then the protected ones");
        assert_eq!(lru.remove(a), "a");
        assert_eq!(back(&lru), None);
        assert_eq!(lru.len(), 0);
    }

    #[test]
    fn a_scan_of_new_paths_does_not_reach_the_protected_ones() {
        const BOUND: usize = 50;
        let mut lru = Lru::default();
        for i in 0..40 {
            lru.push_front(format!("once{i}"));
        }
        let hot: Vec<_> = (0..10)
            .map(|i| {
                let s = lru.push_front(format!("hot{i}"));
                lru.touch(s);
                s
            })
            .collect();
        // A thousand paths asked once each, past the bound, while the hot ones are
        // polled (a hit each) once per 60 new paths: a plain LRU would have evicted
        // them between two polls.
        for i in 0..1000 {
            lru.push_front(format!("scan{i}"));
            while lru.len() > BOUND {
                let (slot, _) = back(&lru).unwrap();
                lru.remove(slot);
            }
            if i % 60 == 59 {
                for slot in &hot {
                    lru.touch(*slot);
                }
            }
        }
        for slot in hot {
            assert!(lru.nodes[slot].key.starts_with("hot"));
            assert_eq!(lru.nodes[slot].segment, PROTECTED);
        }
    }

    #[test]
    fn protected_holds_at_most_four_fifths() {
        let mut lru = Lru::default();
        let slots: Vec<_> = (0..10).map(|i| lru.push_front(format!("p{i}"))).collect();
        for s in &slots {
            lru.touch(*s);
        }
        assert_eq!(lru.lists[PROTECTED].len, 8);
        assert_eq!(lru.lists[PROBATION].len, 2);
        // The first two touched were the least recently used protected: demoted.
        assert_eq!(back(&lru), Some((slots[0], "p0")));
        assert_eq!(order(&lru, PROBATION), ["p1", "p0"]);
    }
}
