//! Turns serde's "unknown field `upstrem`, expected one of `listen`, `upstream`, …" into what a
//! newcomer can act on: "unknown key `upstrem`; did you mean `upstream`?" — the nearest known
//! name by edit distance (Damerau–Levenshtein, `strsim`), at any nesting level, since serde lists
//! the known names of the struct where the key was found. Unknown enum values (`type: redsi`)
//! get the same treatment. Any other message passes through unchanged.

/// The farthest a misspelling may be from the name it suggests: one edit for short names, about
/// a third of the name for longer ones (`upstrem` → `upstream`, `purge_intervall` →
/// `purge_interval`), so that unrelated names are never offered.
fn max_distance(name: &str) -> usize {
    (name.chars().count() / 3).max(1)
}

/// `message` with a suggestion when it is serde's unknown field or unknown variant error.
pub fn explain(message: &str) -> String {
    for (prefix, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some((unknown, expected)) = rest.split_once('`') else {
            return message.to_string();
        };
        let known = quoted_names(expected);
        return match nearest(unknown, &known) {
            Some(near) => format!("unknown {what} `{unknown}`; did you mean `{near}`?"),
            None if known.is_empty() => format!("unknown {what} `{unknown}`; none is allowed here"),
            None => format!("unknown {what} `{unknown}` (known: {})", known.join(", ")),
        };
    }
    message.to_string()
}

/// The names serde lists after "expected": every `backticked` word.
fn quoted_names(expected: &str) -> Vec<&str> {
    expected.split('`').skip(1).step_by(2).collect()
}

/// The known name closest to `unknown`, when it is close enough to be a misspelling.
fn nearest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|name| (strsim::damerau_levenshtein(unknown, name), *name))
        .filter(|(distance, name)| *distance <= max_distance(name))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelled_key_suggests_the_nearest_known_one() {
        assert_eq!(
            explain("unknown field `upstrem`, expected one of `listen`, `upstream`, `public_url`"),
            "unknown key `upstrem`; did you mean `upstream`?"
        );
        assert_eq!(
            explain("unknown field `purge_intervall`, expected one of `type`, `path`, `purge_interval`"),
            "unknown key `purge_intervall`; did you mean `purge_interval`?"
        );
        assert_eq!(
            explain("unknown field `enabeld`, expected `enabled` or `path`"),
            "unknown key `enabeld`; did you mean `enabled`?"
        );
        assert_eq!(
            explain("unknown variant `redsi`, expected `redb` or `redis`"),
            "unknown value `redsi`; did you mean `redis`?"
        );
    }

    #[test]
    fn an_unrelated_key_lists_the_known_ones_instead_of_guessing() {
        assert_eq!(
            explain("unknown field `colour`, expected `enabled` or `path`"),
            "unknown key `colour` (known: enabled, path)"
        );
        assert_eq!(
            explain("unknown field `x`, there are no fields"),
            "unknown key `x`; none is allowed here"
        );
    }

    #[test]
    fn other_messages_pass_through() {
        let message = "invalid type: string \"eighty\", expected u16";
        assert_eq!(explain(message), message);
    }
}
