//! "Did you mean ...?": the nearest known name to a misspelt one.

/// The candidate nearest to `name`: the same name in another case first, else the one with
/// the smallest edit distance if it is small for the name's length. Candidates too far in
/// length are skipped without computing a distance, so a long list stays cheap.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let len = name.chars().count();
    let limit = (len / 3).clamp(1, 3);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        if candidate.to_lowercase() == lower {
            return Some(candidate);
        }
        if candidate.chars().count().abs_diff(len) > limit {
            continue;
        }
        if let Some(d) = distance(&lower, &candidate.to_lowercase(), limit) {
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, candidate));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string
/// alignment), or `None` when it is over `limit`.
fn distance(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 0..a.len() {
        current[0] = i + 1;
        let mut row_min = current[0];
        for j in 0..b.len() {
            let cost = usize::from(a[i] != b[j]);
            let mut d = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                d = d.min(before[j - 1] + 1);
            }
            current[j + 1] = d;
            row_min = row_min.min(d);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let d = previous[b.len()];
    (d <= limit).then_some(d)
}

/// " did you mean `x`?" or nothing, to append to a message.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_differences_are_found_first() {
        assert_eq!(
            closest("ClientStopped", ["serverStarted", "clientStopped"]),
            Some("clientStopped")
        );
    }

    #[test]
    fn small_typos_are_found() {
        assert_eq!(
            closest("eventstream", ["groups", "eventstreams"]),
            Some("eventstreams")
        );
        assert_eq!(
            closest("sever_agent", ["server_agent", "client_agent"]),
            Some("server_agent")
        );
    }

    #[test]
    fn swapped_letters_count_as_one_edit() {
        assert_eq!(closest("svr", ["srv", "cli"]), Some("srv"));
        assert_eq!(closest("mian", ["main"]), Some("main"));
    }

    #[test]
    fn unrelated_names_are_not_suggested() {
        assert_eq!(
            closest("monitorstream", ["groups", "agents", "eventstreams"]),
            None
        );
        assert_eq!(closest("x", ["y"]), Some("y"));
        assert_eq!(closest("ab", ["xyz"]), None);
    }
}
