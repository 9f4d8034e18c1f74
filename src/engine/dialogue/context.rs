//! Answering a caller's question from the recruiter's custom context only: the sentences that share
//! the most meaningful words (with a few recruiting synonyms) with the question. Nothing is invented:
//! when nothing matches, the agent says a recruiter will follow up.

use super::understand::normalize;

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "do", "does", "did", "i", "you", "we",
    "they", "it", "of", "to", "in", "on", "for", "and", "or", "what", "whats", "what's", "how",
    "when", "where", "which", "who", "can", "could", "would", "will", "there", "any", "about",
    "me", "my", "your", "our", "this", "that", "with", "at", "as", "have", "has", "tell", "know",
    "like", "so", "if", "much", "many", "please", "also", "just", "um", "uh", "get", "by", "from",
    "be", "s",
];

/// Groups of words that mean the same thing for a caller's question.
const SYNONYMS: &[&[&str]] = &[
    &[
        "pay",
        "wage",
        "salary",
        "hourly",
        "rate",
        "paid",
        "money",
        "compensation",
        "hour",
    ],
    &["shift", "schedule", "night", "day", "weekend", "time"],
    &[
        "where", "address", "located", "location", "locate", "place", "site", "office",
    ],
    &[
        "benefit",
        "insurance",
        "health",
        "dental",
        "vacation",
        "pto",
        "401k",
        "retirement",
    ],
    &[
        "job",
        "position",
        "opening",
        "role",
        "hiring",
        "work",
        "opportunity",
        "vacancy",
    ],
    &[
        "apply",
        "applied",
        "application",
        "hear",
        "back",
        "reply",
        "status",
    ],
    &["start", "begin", "starting", "when"],
    &[
        "requirement",
        "require",
        "need",
        "license",
        "experience",
        "certification",
        "qualification",
    ],
];

fn stem(word: &str) -> String {
    let w = word.trim_matches('\'');
    for suffix in ["ing", "ed", "es", "s"] {
        if w.len() > suffix.len() + 2
            && let Some(stripped) = w.strip_suffix(suffix)
        {
            return stripped.to_string();
        }
    }
    w.to_string()
}

fn concept(word: &str) -> String {
    let s = stem(word);
    for (i, group) in SYNONYMS.iter().enumerate() {
        if group.iter().any(|g| *g == word || stem(g) == s) {
            return format!("#{i}");
        }
    }
    s
}

fn terms(text: &str) -> Vec<String> {
    let n = normalize(text);
    let mut out: Vec<String> = n
        .split_whitespace()
        .filter(|w| !STOPWORDS.contains(w))
        .map(concept)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Split the custom context into sentences (lines and sentence ends).
pub fn sentences(context: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in context.lines() {
        let mut current = String::new();
        let chars: Vec<char> = line.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            current.push(c);
            let end = matches!(c, '.' | '!' | '?')
                && chars.get(i + 1).is_none_or(|n| n.is_whitespace())
                && !(c == '.'
                    && i > 0
                    && chars[i - 1].is_ascii_digit()
                    && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()));
            if end {
                let s = current.trim().trim_start_matches(['-', '*', '•']).trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
                current.clear();
            }
        }
        let s = current.trim().trim_start_matches(['-', '*', '•']).trim();
        if !s.is_empty() {
            out.push(s.to_string());
        }
    }
    out
}

/// The best one or two context sentences answering `question`, or `None`.
pub fn answer(context: &str, question: &str) -> Option<String> {
    let q = terms(question);
    if q.is_empty() {
        return None;
    }
    let mut scored: Vec<(usize, usize, String)> = sentences(context)
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let t = terms(&s);
            let score = q.iter().filter(|w| t.contains(w)).count();
            (score, i, s)
        })
        .filter(|(score, _, _)| *score > 0)
        .collect();
    if scored.is_empty() {
        return None;
    }
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let best = scored[0].0;
    let mut picked: Vec<(usize, String)> = scored
        .into_iter()
        .filter(|(s, _, _)| *s == best)
        .take(2)
        .map(|(_, i, s)| (i, s))
        .collect();
    picked.sort();
    Some(
        picked
            .into_iter()
            .map(|(_, s)| ensure_period(&s))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The custom context's sentences with their meanings (sentence embeddings, unit length),
/// computed once per context by the server's sentence encoder (`backends::meaning`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContextMeanings {
    /// As [`sentences`] splits the context.
    pub sentences: Vec<String>,
    /// One per sentence.
    pub vectors: Vec<Vec<f32>>,
}

/// How close in meaning a sentence must be to a question to answer it (cosine similarity of
/// all-MiniLM-L6-v2 embeddings: a caller's question scores about 0.35-0.55 with the sentence
/// that answers it, and mostly under 0.25 with the others; `backends::meaning`'s test).
pub const MEANING_THRESHOLD: f32 = 0.30;
/// A second sentence joins the answer when it scores within this of the best.
const MEANING_NEAR: f32 = 0.05;

/// The context sentences closest in meaning to the question (`question`: its meaning), best
/// first in the context's order, at most two; `None` when none is close enough. Only ever the
/// context's own sentences.
pub fn answer_by_meaning(meanings: &ContextMeanings, question: &[f32]) -> Option<String> {
    let mut scored: Vec<(f32, usize)> = meanings
        .vectors
        .iter()
        .enumerate()
        .filter(|(_, v)| v.len() == question.len())
        .map(|(i, v)| (v.iter().zip(question).map(|(a, b)| a * b).sum::<f32>(), i))
        .filter(|(score, _)| *score >= MEANING_THRESHOLD)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let best = scored.first()?.0;
    let mut picked: Vec<usize> = scored
        .iter()
        .take(2)
        .filter(|(score, _)| best - score <= MEANING_NEAR)
        .map(|(_, i)| *i)
        .collect();
    picked.sort_unstable();
    Some(
        picked
            .into_iter()
            .filter_map(|i| meanings.sentences.get(i))
            .map(|s| ensure_period(s))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn ensure_period(s: &str) -> String {
    if s.ends_with(['.', '!', '?']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// The context's line for a caller who already applied, if it has one.
pub fn returning_caller_line(context: &str) -> Option<String> {
    sentences(context)
        .into_iter()
        .find(|s| {
            let n = normalize(s);
            n.contains("already applied")
                || n.contains("applied before")
                || n.contains("previously applied")
                || n.contains("called before")
                || n.contains("returning")
        })
        .map(|s| ensure_period(&s))
}

/// Context sentences about open jobs that mention the caller's location. A sentence that lists
/// positions in several places ("... in Chicago and forklift drivers in Dallas") gives only the
/// part about the caller's place, so that no position elsewhere is suggested.
pub fn jobs_near(context: &str, location: &str) -> Vec<String> {
    let loc = normalize(location);
    if loc.is_empty() {
        return Vec::new();
    }
    let job = concept("job");
    sentences(context)
        .into_iter()
        .filter(|s| normalize(s).contains(&loc) && terms(s).contains(&job))
        .map(|s| {
            let body = s.trim_end_matches(['.', '!', '?']);
            let parts: Vec<&str> = body
                .split([';', ','])
                .flat_map(|p| p.split(" and "))
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            let near: Vec<&str> = parts
                .iter()
                .copied()
                .filter(|p| normalize(p).contains(&loc))
                .collect();
            if parts.len() <= 1 || near.len() == parts.len() {
                return ensure_period(&s);
            }
            // the parts about the caller's place, each said as an opening
            near.iter()
                .map(|p| {
                    if terms(p).contains(&job) {
                        ensure_period(p)
                    } else {
                        ensure_period(&format!("We have openings for {p}"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The places the context's job sentences name: the capitalised words after "in" ("... drivers
/// in Dallas", "in San Antonio"), lowercase.
pub fn job_places(context: &str) -> Vec<String> {
    let job = concept("job");
    let mut out: Vec<String> = Vec::new();
    for s in sentences(context) {
        if !terms(&s).contains(&job) {
            continue;
        }
        for place in places_in(&s, &["in"], false) {
            let place = place.to_lowercase();
            if !out.contains(&place) {
                out.push(place);
            }
        }
    }
    out
}

/// Every place the context names, as written: the capitalised words after "in", "near",
/// "around" or "across" in any sentence, or after a label such as "Locations:" or "Sites:",
/// and the rest of a list they begin ("a warehouse in Mesa", "near Tempe", "in Mesa, Tempe and
/// Chandler", "Locations: Mesa, Tempe"), once each; months, days and languages are not places
/// ("in March", "in Spanish"). A recogniser is primed with
/// them when the caller is asked where they live or what they would like to know: callers
/// mostly live near the positions, and ask about them.
pub fn named_places(context: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sentences(context) {
        for place in places_in(&s, &["in", "near", "around", "across"], true) {
            if !out.iter().any(|p| p.eq_ignore_ascii_case(&place)) {
                out.push(place);
            }
        }
    }
    out
}

/// Labels that a list of places follows, with a colon ("Locations: Mesa, Tempe").
const PLACE_LABELS: &[&str] = &[
    "location",
    "locations",
    "site",
    "sites",
    "city",
    "cities",
    "area",
    "areas",
    "where",
    "office",
    "offices",
    "branch",
    "branches",
    "region",
    "regions",
    "based",
];

/// Capitalised words that follow "in" and are no place ("in March", "in Spanish").
const NOT_PLACES: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "english",
    "spanish",
    "french",
    "german",
    "portuguese",
    "chinese",
    "person",
    "i",
    "our",
    "your",
];

/// The places named right after one of `after` in a sentence, as written: a run of up to three
/// capitalised words, which punctuation ends ("in Dallas, Texas" names Dallas). With `lists`,
/// a list goes on after a comma, "and" or "or" ("in Mesa, Tempe and Chandler" names all three,
/// "in Dallas, Texas" Texas too), and a list also follows one of [`PLACE_LABELS`] and a colon.
fn places_in(sentence: &str, after: &[&str], lists: bool) -> Vec<String> {
    // each word without its punctuation, whether punctuation followed it, and whether a colon
    let words: Vec<(&str, bool, bool)> = sentence
        .split_whitespace()
        .map(|raw| {
            let ended = raw.ends_with(|c: char| !c.is_alphanumeric());
            (
                raw.trim_matches(|c: char| !c.is_alphanumeric()),
                ended,
                raw.ends_with(':'),
            )
        })
        .collect();
    let capitalised = |w: &str| {
        w.chars().next().is_some_and(char::is_uppercase)
            && !NOT_PLACES.iter().any(|n| w.eq_ignore_ascii_case(n))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (word, _, colon) = words[i];
        let labelled = lists && colon && PLACE_LABELS.iter().any(|l| word.eq_ignore_ascii_case(l));
        if !labelled && !after.iter().any(|a| word.eq_ignore_ascii_case(a)) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        loop {
            let start = j;
            while j < words.len() && j - start < 3 && capitalised(words[j].0) {
                j += 1;
                if words[j - 1].1 {
                    break;
                }
            }
            if j == start {
                break;
            }
            let place: Vec<&str> = words[start..j].iter().map(|w| w.0).collect();
            out.push(place.join(" "));
            let joined = words
                .get(j)
                .is_some_and(|w| w.0.eq_ignore_ascii_case("and") || w.0.eq_ignore_ascii_case("or"));
            if !lists || !(joined || words[j - 1].1) {
                break;
            }
            j += usize::from(joined);
        }
        i = j.max(i + 1);
    }
    out
}

/// Whether the context says anything about open positions.
pub fn lists_jobs(context: &str) -> bool {
    let job = concept("job");
    sentences(context).iter().any(|s| terms(s).contains(&job))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: &str = "We are hiring warehouse associates in Chicago and forklift drivers in Dallas.\n\
        Pay is $18.50 per hour, with overtime after 40 hours.\n\
        Shifts run from 6 am to 2 pm or 2 pm to 10 pm, Monday to Friday.\n\
        Full-time staff get health insurance after 60 days.\n\
        If you already applied, expect a reply within 3 days.";

    #[test]
    fn answers_from_context() {
        assert_eq!(
            answer(CTX, "what is the pay").as_deref(),
            Some("Pay is $18.50 per hour, with overtime after 40 hours.")
        );
        assert!(
            answer(CTX, "what are the shifts")
                .unwrap()
                .starts_with("Shifts run")
        );
        assert!(
            answer(CTX, "do you offer benefits")
                .unwrap()
                .contains("health insurance")
        );
        assert_eq!(answer(CTX, "do you like pizza"), None);
        assert_eq!(answer("", "what is the pay"), None);
    }

    #[test]
    fn returning_and_jobs() {
        assert_eq!(
            returning_caller_line(CTX).as_deref(),
            Some("If you already applied, expect a reply within 3 days.")
        );
        assert_eq!(
            jobs_near(CTX, "Chicago"),
            ["We are hiring warehouse associates in Chicago."]
        );
        assert_eq!(
            jobs_near(CTX, "Dallas"),
            ["We have openings for forklift drivers in Dallas."]
        );
        assert!(jobs_near(CTX, "Boston").is_empty());
        assert!(lists_jobs(CTX));
        assert_eq!(job_places(CTX), ["chicago", "dallas"]);
        assert_eq!(named_places(CTX), ["Chicago", "Dallas"]);
        assert_eq!(
            named_places(
                "Warehouse shifts in Mesa and near Tempe. Pickers in Sun City West, Arizona. \
                 Apply in person in mesa or in Phoenix."
            ),
            ["Mesa", "Tempe", "Sun City West", "Arizona", "Phoenix"]
        );
        let listed = "We have jobs in Mesa, Tempe and Chandler, and drivers in Dallas, Texas.";
        assert_eq!(
            named_places(listed),
            ["Mesa", "Tempe", "Chandler", "Dallas", "Texas"]
        );
        // a job's place is the first of a list, without what follows a comma
        assert_eq!(job_places(listed), ["mesa", "dallas"]);
        assert!(named_places("Pay is $18 per hour, paid in cash.").is_empty());
        // after a label, or "around" and "across"; never a month, a day or a language
        assert_eq!(
            named_places(
                "Locations: Mesa, Tempe and Gilbert.\nSites: Sun City West\n\
                 Drivers wanted across Chandler and around Scottsdale."
            ),
            [
                "Mesa",
                "Tempe",
                "Gilbert",
                "Sun City West",
                "Chandler",
                "Scottsdale"
            ]
        );
        assert!(
            named_places(
                "Shifts start in March, training is in Spanish or English, interviews in \
                 person on Monday. Note: Bring ID."
            )
            .is_empty()
        );
        // a place's own article is part of it
        assert_eq!(named_places("Drivers in The Woodlands."), ["The Woodlands"]);
        assert_eq!(
            job_places("Picker jobs open in January in Mesa. Forklift jobs in Tempe start in May."),
            ["mesa", "tempe"]
        );
        assert!(!lists_jobs("Pay is $18 per hour."));
    }
}
