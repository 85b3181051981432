//! The lanes of a priority queue: one FIFO per priority, found by a bitmap of the non-empty
//! ones, so taking the next message is a few word scans whatever the number of priorities.
//!
//! Lanes are kept when they empty (with their capacity): a consumer that keeps up empties
//! and refills them all the time, and re-creating them per message cost a fifth of a
//! 100-level queue's throughput when they lived in a map.

use std::collections::VecDeque;

/// FIFO lanes for priorities 1 to 255 (priority 0 is the queue's main, pageable list).
#[derive(Debug)]
pub(super) struct PriorityLanes<T> {
    /// Indexed by priority; grown on first use of a priority.
    lanes: Vec<VecDeque<T>>,
    /// Bit `p` is set while lane `p` holds something.
    occupied: [u64; 4],
    /// Entries in all lanes.
    len: usize,
}

impl<T> Default for PriorityLanes<T> {
    fn default() -> Self {
        PriorityLanes {
            lanes: Vec::new(),
            occupied: [0; 4],
            len: 0,
        }
    }
}

impl<T> PriorityLanes<T> {
    /// Entries in all lanes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn lane(&mut self, priority: u8) -> &mut VecDeque<T> {
        let index = usize::from(priority);
        if self.lanes.len() <= index {
            self.lanes.resize_with(index + 1, VecDeque::new);
        }
        self.occupied[index / 64] |= 1 << (index % 64);
        self.len += 1;
        &mut self.lanes[index]
    }

    /// Appends to lane `priority`.
    pub(super) fn push_back(&mut self, priority: u8, entry: T) {
        self.lane(priority).push_back(entry);
    }

    /// Puts at the front of lane `priority`.
    pub(super) fn push_front(&mut self, priority: u8, entry: T) {
        self.lane(priority).push_front(entry);
    }

    /// Inserts into lane `priority` before the first entry for which `after` is true (the
    /// lane is ordered by what `after` compares).
    pub(super) fn insert_ordered(&mut self, priority: u8, entry: T, after: impl Fn(&T) -> bool) {
        let lane = self.lane(priority);
        let position = lane.partition_point(|queued| !after(queued));
        lane.insert(position, entry);
    }

    /// The highest non-empty priority.
    fn highest(&self) -> Option<usize> {
        (0..4).rev().find_map(|word| {
            let bits = self.occupied[word];
            (bits != 0).then(|| word * 64 + 63 - bits.leading_zeros() as usize)
        })
    }

    /// Takes the front of lane `index` if `take` agrees.
    fn pop_from(&mut self, index: usize, take: impl FnOnce(&T) -> bool) -> Option<T> {
        let lane = self.lanes.get_mut(index)?;
        if !lane.front().is_some_and(take) {
            return None;
        }
        let entry = lane.pop_front()?;
        if lane.is_empty() {
            self.occupied[index / 64] &= !(1 << (index % 64));
        }
        self.len -= 1;
        Some(entry)
    }

    /// Takes the first entry of the highest non-empty lane.
    pub(super) fn pop_highest(&mut self) -> Option<T> {
        let index = self.highest()?;
        self.pop_from(index, |_| true)
    }

    /// The non-empty priorities, highest first: taken from a copy of the bitmap, so the lanes
    /// may change while it is walked, and nothing is allocated.
    pub(super) fn priorities(&self) -> impl Iterator<Item = u8> {
        let mut occupied = self.occupied;
        let mut word = 4;
        std::iter::from_fn(move || loop {
            if word == 0 {
                return None;
            }
            let bits = occupied[word - 1];
            if bits == 0 {
                word -= 1;
                continue;
            }
            let bit = 63 - bits.leading_zeros() as usize;
            occupied[word - 1] &= !(1 << bit);
            // At most 255: a u8 priority set the bit.
            return Some(u8::try_from((word - 1) * 64 + bit).unwrap_or(u8::MAX));
        })
    }

    /// Takes the front of lane `priority` if `take` agrees.
    pub(super) fn pop_front_if(
        &mut self,
        priority: u8,
        take: impl FnOnce(&T) -> bool,
    ) -> Option<T> {
        self.pop_from(usize::from(priority), take)
    }

    /// The fronts of the non-empty lanes.
    pub(super) fn fronts(&self) -> impl Iterator<Item = &T> {
        self.lanes.iter().filter_map(VecDeque::front)
    }

    /// Empties every lane.
    pub(super) fn drain(&mut self) -> Vec<T> {
        self.occupied = [0; 4];
        self.len = 0;
        self.lanes
            .iter_mut()
            .flat_map(|lane| lane.drain(..))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_first_fifo_within_a_priority() {
        let mut lanes = PriorityLanes::default();
        for (priority, value) in [(1, "a"), (200, "b"), (64, "c"), (200, "d"), (63, "e")] {
            lanes.push_back(priority, value);
        }
        assert_eq!(lanes.len(), 5);
        assert_eq!(lanes.priorities().collect::<Vec<_>>(), [200, 64, 63, 1]);
        let order: Vec<&str> = std::iter::from_fn(|| lanes.pop_highest()).collect();
        assert_eq!(order, ["b", "d", "c", "e", "a"]);
        assert_eq!(lanes.len(), 0);
        assert_eq!(lanes.priorities().next(), None);
        lanes.push_back(255, "z");
        lanes.insert_ordered(255, "y", |queued| *queued > "y");
        assert_eq!(lanes.pop_front_if(255, |front| *front == "y"), Some("y"));
        assert_eq!(lanes.pop_front_if(255, |front| *front == "y"), None);
        assert_eq!(lanes.drain(), ["z"]);
        assert_eq!(lanes.pop_highest(), None);
    }
}
