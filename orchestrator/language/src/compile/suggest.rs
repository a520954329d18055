//! "Did you mean" hints: the closest known name to a misspelled one. Only called once a
//! name is already known to be wrong, so valid definitions never pay for it.

/// The candidate closest to `wrong`, if one is close enough to be a plausible typo.
pub(crate) fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong_lower = wrong.to_lowercase();
    // A third of the length, at least one edit: "Tsk" -> "Task", "ChargePaymnt" ->
    // "ChargePayment", but not "A" -> "B".
    let budget = (wrong.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == wrong {
            continue;
        }
        let distance = strsim::damerau_levenshtein(&wrong_lower, &candidate.to_lowercase());
        if distance <= budget && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// ` (did you mean "X"?)`, or nothing when no candidate is close.
pub(crate) fn hint<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(wrong, candidates).map_or_else(String::new, |c| format!(" (did you mean \"{c}\"?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_but_not_strangers() {
        assert_eq!(closest("ChargePaymnt", ["Reserve", "ChargePayment"]), Some("ChargePayment"));
        assert_eq!(closest("Tsk", ["Pass", "Task"]), Some("Task"));
        assert_eq!(closest("pass", ["Pass", "Task"]), Some("Pass"));
        assert_eq!(closest("Shipping", ["Pass", "Task"]), None);
        assert_eq!(hint("Zzz", ["Pass"]), "");
    }
}
