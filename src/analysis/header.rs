//! Column naming exactly as pandas' C parser does it: `Unnamed: N` for empty cells, then
//! de-duplication (`a`, `a.1`, …) visiting named columns before unnamed ones.

use std::collections::HashMap;

pub(super) fn pandas_names(raw: Vec<String>) -> Vec<String> {
    let mut names = raw;
    let mut unnamed = Vec::new();
    for (i, name) in names.iter_mut().enumerate() {
        if name.is_empty() {
            *name = format!("Unnamed: {i}");
            unnamed.push(i);
        }
    }
    // Multiset of the names currently in the header (pandas checks `col in this_header`
    // against the header as it is being rewritten).
    let mut present: HashMap<String, usize> = HashMap::new();
    for n in &names {
        *present.entry(n.clone()).or_insert(0) += 1;
    }
    let is_unnamed = {
        let mut v = vec![false; names.len()];
        for &i in &unnamed {
            v[i] = true;
        }
        v
    };
    let order = (0..names.len())
        .filter(|i| !is_unnamed[*i])
        .chain(unnamed.iter().copied());
    let order: Vec<usize> = order.collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in order {
        let old = names[i].clone();
        let mut col = old.clone();
        let mut cur = counts.get(&col).copied().unwrap_or(0);
        if cur > 0 {
            while cur > 0 {
                counts.insert(old.clone(), cur + 1);
                col = format!("{old}.{cur}");
                if present.get(&col).copied().unwrap_or(0) > 0 {
                    cur += 1;
                } else {
                    cur = counts.get(&col).copied().unwrap_or(0);
                }
            }
            if let Some(c) = present.get_mut(&old) {
                *c = c.saturating_sub(1);
            }
            *present.entry(col.clone()).or_insert(0) += 1;
            names[i] = col.clone();
        }
        counts.insert(col, cur + 1);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::pandas_names;

    fn n(v: &[&str]) -> Vec<String> {
        pandas_names(v.iter().map(|s| s.to_string()).collect())
    }

    // Expected values below were produced by pandas 3.1 read_csv.
    #[test]
    fn duplicates_like_pandas() {
        assert_eq!(n(&["a", "a", "a"]), ["a", "a.1", "a.2"]);
        assert_eq!(n(&["a", "a.1", "a"]), ["a", "a.1", "a.2"]);
        assert_eq!(n(&["a", "a", "a.1", "a"]), ["a", "a.2", "a.1", "a.3"]);
    }

    #[test]
    fn unnamed_like_pandas() {
        assert_eq!(n(&["a", "", "c", ""]), ["a", "Unnamed: 1", "c", "Unnamed: 3"]);
        assert_eq!(n(&["", "Unnamed: 0", ""]), ["Unnamed: 0.1", "Unnamed: 0", "Unnamed: 2"]);
        assert_eq!(n(&["a", " ", "c"]), ["a", " ", "c"]);
    }
}
