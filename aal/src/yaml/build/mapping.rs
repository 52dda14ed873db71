//! Finishing a mapping: merge keys (`<<: *base`) applied as PyYAML's full loader did, and
//! duplicate keys reported (the later one wins, at the earlier key's place, as in a Python
//! dict); several documents merged key by key like several files.

use super::Builder;
use crate::diagnostic::{location, Diagnostic};
use crate::procedure::Span;
use crate::yaml::{key_text, Kind, Node};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

impl<'a> Builder<'a> {
    /// Applies merge keys and removes duplicate keys (the later value wins, at the earlier
    /// key's position, as a Python dict does).
    pub(super) fn finish_map(
        &mut self,
        entries: Vec<(Node<'a>, Node<'a>)>,
    ) -> Vec<(Node<'a>, Node<'a>)> {
        let is_root = self.stack.is_empty();
        if !entries.iter().any(|(k, _)| is_merge_key(k)) {
            return self.dedupe(entries, is_root);
        }
        let mut merged: Vec<(Node<'a>, Node<'a>)> = Vec::new();
        let mut explicit: Vec<(Node<'a>, Node<'a>)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if is_merge_key(&key) {
                self.merge_into(&mut merged, value);
            } else {
                explicit.push((key, value));
            }
        }
        let explicit = self.dedupe(explicit, is_root);
        if merged.is_empty() {
            return explicit;
        }
        let own: HashSet<Cow<'_, str>> = explicit.iter().map(|(k, _)| key_text(k)).collect();
        merged.retain(|(k, _)| !own.contains(&key_text(k)));
        drop(own);
        merged.extend(explicit);
        merged
    }

    /// Adds the entries a `<<` value brings (a mapping, or a list of mappings where the
    /// first one wins), without overriding what is already there.
    fn merge_into(&mut self, merged: &mut Vec<(Node<'a>, Node<'a>)>, value: Node<'a>) {
        let sources: Vec<Node<'a>> = match value.kind {
            Kind::Map(_) => vec![value],
            Kind::Seq(items) if items.iter().all(|i| i.map().is_some()) => items,
            _ => {
                self.diagnostics.push(
                    Diagnostic::error(
                        value.span,
                        "a merge key `<<` needs a mapping or a list of mappings",
                    )
                    .width(value.width as usize)
                    .help("write `<<: *anchor` where `&anchor` names a mapping"),
                );
                return;
            }
        };
        let mut seen: HashSet<String> = merged
            .iter()
            .map(|(k, _)| key_text(k).into_owned())
            .collect();
        for source in sources {
            if let Kind::Map(entries) = source.kind {
                for (k, v) in entries {
                    if seen.insert(key_text(&k).into_owned()) {
                        merged.push((k, v));
                    }
                }
            }
        }
    }

    fn dedupe(
        &mut self,
        entries: Vec<(Node<'a>, Node<'a>)>,
        is_root: bool,
    ) -> Vec<(Node<'a>, Node<'a>)> {
        let first = first_occurrences(&entries);
        if first.is_empty() {
            return entries;
        }
        // Where each first occurrence sits in the output.
        let mut position: Vec<usize> = vec![0; entries.len()];
        let mut out: Vec<(Node<'a>, Node<'a>)> = Vec::with_capacity(entries.len());
        for (j, (key, value)) in entries.into_iter().enumerate() {
            match first[j] {
                None => {
                    position[j] = out.len();
                    out.push((key, value));
                }
                Some(i) => {
                    let at = position[i];
                    let earlier = out[at].0.span;
                    let text = key_text(&key).into_owned();
                    self.duplicate(&text, earlier, &key, is_root);
                    out[at] = (key, value);
                }
            }
        }
        out
    }

    fn duplicate(&mut self, text: &str, earlier: Span, later: &Node, is_root: bool) {
        let d = if is_root && earlier.file != later.span.file {
            let path = |f: usize| self.files.get(f).map(|s| s.path.as_str()).unwrap_or("?");
            Diagnostic::warning(
                later.span,
                format!(
                    "`{text}` in {} replaces the `{text}` of {}",
                    path(later.span.file),
                    path(earlier.file)
                ),
            )
            .note(format!(
                "the replaced `{text}` is at {}; top-level keys of several files are not merged",
                location(earlier, self.files)
            ))
            .help(format!(
                "put everything under one `{text}:`, in one of the files"
            ))
        } else {
            Diagnostic::warning(
                later.span,
                format!("duplicate key `{text}`: the later one wins"),
            )
            .note(format!(
                "the earlier `{text}`, now ignored, is at {}",
                location(earlier, self.files)
            ))
            .help("remove one of the two, or merge them")
        };
        self.diagnostics.push(d.width(later.width as usize));
    }

    /// One root out of the documents: every document's mapping merged key by key.
    pub(super) fn merge_documents(&mut self) -> Option<Node<'a>> {
        let documents: Vec<Node<'a>> = std::mem::take(&mut self.documents)
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
        if documents.len() <= 1 {
            return documents.into_iter().next();
        }
        if let Some(other) = documents.iter().find(|d| d.map().is_none()) {
            // Validation reports a root that is not a mapping.
            return Some(other.clone());
        }
        let span = documents[0].span;
        let width = documents[0].width;
        let entries: Vec<(Node<'a>, Node<'a>)> = documents
            .into_iter()
            .flat_map(|d| match d.kind {
                Kind::Map(entries) => entries,
                _ => Vec::new(),
            })
            .collect();
        let entries = self.dedupe(entries, true);
        Some(Node {
            span,
            width,
            kind: Kind::Map(entries),
        })
    }
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.kind, Kind::Scalar(s) if !s.quoted && s.text == "<<")
}

/// For each entry, the index of the first entry with the same key if it is a repeat;
/// empty when no key repeats (the common case, which allocates nothing more).
fn first_occurrences(entries: &[(Node, Node)]) -> Vec<Option<usize>> {
    let mut first: Vec<Option<usize>> = Vec::new();
    let mark = |first: &mut Vec<Option<usize>>, j: usize, i: usize| {
        if first.is_empty() {
            first.resize(entries.len(), None);
        }
        first[j] = Some(i);
    };
    if entries.len() <= 12 {
        // Small mappings: comparing is cheaper than hashing.
        for j in 1..entries.len() {
            let key = key_text(&entries[j].0);
            if let Some(i) = (0..j).find(|&i| key_text(&entries[i].0) == key) {
                mark(&mut first, j, i);
            }
        }
    } else {
        let mut seen: HashMap<Cow<'_, str>, usize> = HashMap::with_capacity(entries.len());
        for (j, (k, _)) in entries.iter().enumerate() {
            match seen.get(&key_text(k)) {
                Some(&i) => mark(&mut first, j, i),
                None => {
                    seen.insert(key_text(k), j);
                }
            }
        }
    }
    first
}
