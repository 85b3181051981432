//! Topic-exchange routing: a trie over dot-separated words with `*` (exactly one word) and `#`
//! (zero or more words) nodes, so a lookup walks the key's words instead of every binding.

/// A trie of binding patterns, each leaf holding the destinations bound with that pattern.
#[derive(Debug)]
pub struct TopicTrie<D> {
    root: Node<D>,
}

#[derive(Debug)]
struct Node<D> {
    words: crate::core::FastMap<Box<str>, Node<D>>,
    star: Option<Box<Node<D>>>,
    hash: Option<Box<Node<D>>>,
    destinations: Vec<D>,
}

impl<D> Default for Node<D> {
    fn default() -> Self {
        Node {
            words: Default::default(),
            star: None,
            hash: None,
            destinations: Vec::new(),
        }
    }
}

impl<D> Default for TopicTrie<D> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
        }
    }
}

impl<D> Node<D> {
    fn is_empty(&self) -> bool {
        self.destinations.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

impl<D: PartialEq + Clone> TopicTrie<D> {
    /// Adds `destination` under `pattern`; a no-op when already present.
    pub fn insert(&mut self, pattern: &str, destination: D) {
        let mut node = &mut self.root;
        for word in pattern_words(pattern) {
            node = match word {
                "*" => node.star.get_or_insert_with(Default::default),
                "#" => node.hash.get_or_insert_with(Default::default),
                _ => node.words.entry(word.into()).or_default(),
            };
        }
        if !node.destinations.contains(&destination) {
            node.destinations.push(destination);
        }
    }

    /// Removes `destination` from `pattern`, pruning empty nodes.
    pub fn remove(&mut self, pattern: &str, destination: &D) {
        let words: Vec<&str> = pattern_words(pattern).collect();
        remove_from(&mut self.root, &words, destination);
    }

    /// Calls `found` with every destination whose pattern matches `routing_key` (a destination
    /// bound with several matching patterns is reported once per pattern; callers dedupe).
    pub fn for_each_match(&self, routing_key: &str, found: &mut impl FnMut(&D)) {
        // Keys are short; a small stack buffer of word slices avoids allocating per publish
        // for the common case.
        let mut words: smallvec_words::Words<'_> = smallvec_words::Words::new();
        for word in routing_key.split('.') {
            words.push(word);
        }
        match_node(&self.root, words.as_slice(), found);
    }
}

/// The words of a binding pattern, with runs of `#` collapsed (`#.#` matches what `#` does),
/// which keeps matching linear in the key for adversarial patterns.
fn pattern_words(pattern: &str) -> impl Iterator<Item = &str> {
    let mut previous_hash = false;
    pattern.split('.').filter(move |word| {
        let is_hash = *word == "#";
        let keep = !(is_hash && previous_hash);
        previous_hash = is_hash;
        keep
    })
}

fn remove_from<D: PartialEq>(node: &mut Node<D>, words: &[&str], destination: &D) {
    let Some((first, rest)) = words.split_first() else {
        node.destinations.retain(|d| d != destination);
        return;
    };
    match *first {
        "*" => {
            if let Some(child) = node.star.as_mut() {
                remove_from(child, rest, destination);
                if child.is_empty() {
                    node.star = None;
                }
            }
        }
        "#" => {
            if let Some(child) = node.hash.as_mut() {
                remove_from(child, rest, destination);
                if child.is_empty() {
                    node.hash = None;
                }
            }
        }
        word => {
            if let Some(child) = node.words.get_mut(word) {
                remove_from(child, rest, destination);
                if child.is_empty() {
                    node.words.remove(word);
                }
            }
        }
    }
}

fn match_node<D>(node: &Node<D>, words: &[&str], found: &mut impl FnMut(&D)) {
    if let Some(hash) = &node.hash {
        // `#` swallows zero or more words: try every split point.
        for skip in 0..=words.len() {
            match_node(hash, &words[skip..], found);
        }
    }
    let Some((first, rest)) = words.split_first() else {
        node.destinations.iter().for_each(found);
        return;
    };
    if let Some(child) = node.words.get(*first) {
        match_node(child, rest, found);
    }
    if let Some(star) = &node.star {
        match_node(star, rest, found);
    }
}

/// A tiny inline vector of word slices (no heap allocation up to 16 words).
mod smallvec_words {
    pub(super) struct Words<'a> {
        inline: [&'a str; 16],
        len: usize,
        spill: Vec<&'a str>,
    }

    impl<'a> Words<'a> {
        pub(super) fn new() -> Self {
            Words {
                inline: [""; 16],
                len: 0,
                spill: Vec::new(),
            }
        }

        pub(super) fn push(&mut self, word: &'a str) {
            if !self.spill.is_empty() {
                self.spill.push(word);
            } else if self.len < self.inline.len() {
                self.inline[self.len] = word;
                self.len += 1;
            } else {
                self.spill.extend_from_slice(&self.inline);
                self.spill.push(word);
            }
        }

        pub(super) fn as_slice(&self) -> &[&'a str] {
            if self.spill.is_empty() {
                &self.inline[..self.len]
            } else {
                &self.spill
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        let mut trie = TopicTrie::default();
        trie.insert(pattern, 1u32);
        let mut hit = false;
        trie.for_each_match(key, &mut |_| hit = true);
        hit
    }

    #[test]
    fn matching_table() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#", "", true),
            ("#", "a.b", true),
            ("#.c", "c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.d", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.x.y.c", true),
            ("*", "a.b", false),
            ("*.*", "a.b", true),
            ("a.*.#", "a", false),
            ("a.*.#", "a.b", true),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }

    #[test]
    fn long_keys_spill_without_loss() {
        let key = (0..40).map(|i| i.to_string()).collect::<Vec<_>>().join(".");
        assert!(matches("#.39", &key));
        assert!(matches(&key, &key));
    }

    #[test]
    fn remove_prunes() {
        let mut trie = TopicTrie::default();
        trie.insert("a.*.#", 1u32);
        trie.insert("a.*.#", 2u32);
        trie.remove("a.*.#", &1);
        let mut found = Vec::new();
        trie.for_each_match("a.b", &mut |d| found.push(*d));
        assert_eq!(found, vec![2]);
        trie.remove("a.*.#", &2);
        assert!(trie.root.is_empty());
    }
}
