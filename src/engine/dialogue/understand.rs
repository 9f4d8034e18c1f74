//! Understanding a caller's reply without a language model: yes/no, numbers, names, places, and
//! whether an answer meets the recruiter's expectation. Deterministic, so tests can rely on it.

use crate::model::{AnswerValue, QuestionKind};

/// Lowercase, punctuation to spaces, whitespace folded. Keeps apostrophes inside words.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = true;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let c = c.to_ascii_lowercase();
        let in_number = (c == '.' || c == ',')
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_alphanumeric() || c == '\'' || in_number {
            // "MARÍA", "Émile": letters beyond ASCII are lowered too
            if c.is_uppercase() {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
            last_space = false;
        } else if !last_space {
            out.push(' ');
            last_space = true;
        }
    }
    out.trim_end().to_string()
}

/// The reply's words, normalised (apostrophes at their edges trimmed).
pub(super) fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

// A caller in another language, on a call that goes on in English (a multilingual receptionist
// whose voice speaks only English): the commonest greetings, yes and no, and ways to give a name
// or a place in Spanish, French, Portuguese, German and Italian, so that "Sí", "Me llamo María
// López" and "Vivo en Sacramento" are understood. None is an English word a caller would say in
// those places.

/// Yes in other languages.
const YES_ABROAD: &[&str] = &[
    "sí", "si", "oui", "ouais", "sim", "ja", "jawohl", "claro", "certo", "vale", "exacto", "genau",
];
/// No in other languages.
const NO_ABROAD: &[&str] = &["non", "não", "nao", "nein", "nunca", "jamais"];
/// Greetings and fillers in other languages, skipped at the start of an answer (whole phrases,
/// so that a caller named Dia or Ola keeps their name).
const GREETINGS_ABROAD: &[&[&str]] = &[
    &["hola"],
    &["buenos", "días"],
    &["buenos", "dias"],
    &["buenas", "tardes"],
    &["buenas", "noches"],
    &["bueno"],
    &["pues"],
    &["bonjour"],
    &["bonsoir"],
    &["salut"],
    &["alors"],
    &["olá"],
    &["bom", "dia"],
    &["boa", "tarde"],
    &["boa", "noite"],
    &["hallo"],
    &["guten", "tag"],
    &["guten", "morgen"],
    &["ciao"],
    &["buongiorno"],
    &["buonasera"],
];
/// "My name is" in other languages.
const NAME_LEADS_ABROAD: &[&[&str]] = &[
    &["me", "llamo"],
    &["mi", "nombre", "es"],
    &["soy"],
    &["je", "m'appelle"],
    &["je", "suis"],
    &["mon", "nom", "est"],
    &["moi", "c'est"],
    &["meu", "nome", "é"],
    &["me", "chamo"],
    &["eu", "sou"],
    &["ich", "heiße"],
    &["ich", "heisse"],
    &["mein", "name", "ist"],
    &["ich", "bin"],
    &["mi", "chiamo"],
    &["il", "mio", "nome", "è"],
    &["sono"],
];
/// "I live in" in other languages.
const PLACE_LEADS_ABROAD: &[&[&str]] = &[
    &["vivo", "en"],
    &["estoy", "en"],
    &["soy", "de"],
    &["en"],
    &["je", "vis", "à"],
    &["j'habite", "à"],
    &["j'habite"],
    &["je", "suis", "à"],
    &["à"],
    &["moro", "em"],
    &["vivo", "em"],
    &["em"],
    &["ich", "wohne", "in"],
    &["abito", "a"],
    &["vivo", "a"],
];
/// Words that join a name to what follows it ("María López y quisiera ...").
const AND_ABROAD: &[&str] = &["y", "et", "und"];

const YES_WORDS: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "ya",
    "yah",
    "sure",
    "correct",
    "right",
    "absolutely",
    "definitely",
    "certainly",
    "affirmative",
    "okay",
    "ok",
    "indeed",
];
const NO_WORDS: &[&str] = &[
    "no", "nope", "nah", "not", "don't", "dont", "never", "negative", "can't", "cant", "haven't",
    "havent", "won't", "wont", "isn't", "aren't", "didn't", "doesn't", "cannot",
];

/// Sounds a listener makes without meaning to take the floor.
pub(crate) const BACKCHANNEL_SOUNDS: &[&str] = &[
    "uh", "huh", "um", "umm", "hm", "hmm", "mm", "mmm", "mhm", "ah", "oh", "er", "eh", "aha",
    "uhhuh", "ahh", "ohh", "ooh", "o", "wow",
];
/// Words that acknowledge rather than answer (unless what was cut off was a question): the
/// common English backchannels ("okay", "yes", "all right", "got it", "I see", "I understand",
/// "exactly", "makes sense", "sounds good", "of course", "perfect", "sure thing") word by word. Each word
/// here is no reason to stop the agent by itself; any other word in what was said is.
pub(crate) const ACKNOWLEDGEMENTS: &[&str] = &[
    "okay",
    "ok",
    "right",
    "yeah",
    "yes",
    "yep",
    "yup",
    "ya",
    "yah",
    "alright",
    "all",
    "sure",
    "i",
    "see",
    "got",
    "gotcha",
    "it",
    "cool",
    "great",
    "good",
    "fine",
    "nice",
    "perfect",
    "exactly",
    "absolutely",
    "definitely",
    "totally",
    "true",
    "understand",
    "understood",
    "makes",
    "sense",
    "sounds",
    "of",
    "course",
    "thing",
];

/// Whether the caller's words are only a backchannel ("uh-huh", "mm-hmm", and, with
/// `acknowledgements`, "okay", "right", "yeah", "I see"): a listener's sound, not a turn.
pub fn is_backchannel(text: &str, acknowledgements: bool) -> bool {
    let w = words(text);
    !w.is_empty()
        && w.iter().all(|w| {
            BACKCHANNEL_SOUNDS.contains(&w.as_str())
                || (acknowledgements && ACKNOWLEDGEMENTS.contains(&w.as_str()))
        })
}

/// A backchannel sound or an acknowledgement word ("uh", "okay", "got").
fn backchannel_word(w: &str) -> bool {
    BACKCHANNEL_SOUNDS.contains(&w) || ACKNOWLEDGEMENTS.contains(&w)
}

/// Words that, alone, are no reason to stop the agent: fillers, politeness, and what a small
/// recogniser makes of a breath or a hum ("and", "you").
const NOT_THE_FLOOR: &[&str] = &["and", "so", "you", "the", "a", "thank", "thanks", "well"];

/// A hum however a recogniser spells it ("m", "mm m", "mn", "hmm", "mhm"): the letters of a
/// closed mouth, no word.
fn is_hum(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| matches!(b, b'm' | b'n' | b'h'))
}

/// Whether words said over the agent take the floor: something beyond backchannels
/// ("uh-huh", "okay", "right"), hums, fillers and politeness. "Wait", "no", "sorry, which job"
/// do.
pub fn takes_the_floor(text: &str) -> bool {
    words(text).iter().any(|w| takes_the_floor_word(w))
}

/// One word of [`takes_the_floor`].
fn takes_the_floor_word(w: &str) -> bool {
    !backchannel_word(w) && !NOT_THE_FLOOR.contains(&w) && !is_hum(w)
}

/// Words that open an interruption ("Sorry, ...", "Wait", "Excuse me", "Hold on", "Actually,
/// ..."): no backchannel is heard as one, so words with one in them need no second look.
const OPENS_AN_INTERRUPTION: &[&str] = &[
    "sorry", "wait", "excuse", "pardon", "hold", "hang", "stop", "hello", "hey", "actually",
];

/// Whether words said over the agent hold a word that opens an interruption.
pub fn opens_an_interruption(text: &str) -> bool {
    words(text)
        .iter()
        .any(|w| OPENS_AN_INTERRUPTION.contains(&w.as_str()))
}

/// Words a check heard over the agent read as a backchannel the check cut short, if they can
/// be: no word takes the floor but perhaps the last, and that one begins a backchannel word
/// ("go" of "got it", "ri" of "right"), which it is then completed to; and a backchannel word of
/// two letters or more is in it (letters and fillers alone are no backchannel: "n o" is "no").
pub fn backchannel_cut_short(text: &str) -> Option<String> {
    let mut w = words(text);
    let last = w.last_mut()?;
    if takes_the_floor_word(last) && last.len() >= 2 {
        let begun = BACKCHANNEL_SOUNDS
            .iter()
            .chain(ACKNOWLEDGEMENTS)
            .find(|b| b.starts_with(last.as_str()))?;
        *last = begun.to_string();
    }
    let floor = w.iter().any(|w| takes_the_floor_word(w));
    let backchannel = w.iter().any(|w| w.len() >= 2 && backchannel_word(w));
    (!floor && backchannel).then(|| w.join(" "))
}

/// Words that, said right after a yes or a no, say it again and nothing more: pronouns and the
/// verbs of a short answer ("Yes, ... I am", "No, ... I don't", "Sure, ... I can do that").
const RESTATING: &[&str] = &[
    "i", "i'm", "im", "am", "do", "does", "did", "can", "could", "have", "has", "will", "would",
    "is", "are", "was", "it", "that", "that's", "thats", "this", "we", "we're", "of", "course",
    "sir", "ma'am", "maam",
];

/// Whether words said right after a yes (`yes`) or a no to a yes-or-no question only say it
/// again: made of the answer's own words ("yes", "sure"; "no", "not", "don't"), the pronouns and
/// verbs of a short answer, and sounds that take no floor, and not the other answer. "I am",
/// "I do", "yeah I can" after a yes do; "I'm not", "but only weekends", "what's the pay" do not.
pub fn restates_yes_no(yes: bool, text: &str) -> bool {
    let w = words(text);
    let answer: &[&str] = if yes { YES_WORDS } else { NO_WORDS };
    !w.is_empty()
        && w.iter().all(|w| {
            let w = w.as_str();
            answer.contains(&w) || RESTATING.contains(&w) || !takes_the_floor_word(w)
        })
        && yes_no_of(&w).is_none_or(|said| said == yes)
}

/// Ways of saying one does not know, which answer neither yes nor no ("I'm not sure" is no
/// "no", "no sé" no "no"), in English and the languages above.
const UNSURE: &[&[&str]] = &[
    &["not", "sure"],
    &["not", "really", "sure"],
    &["not", "too", "sure"],
    &["not", "quite", "sure"],
    &["not", "certain"],
    &["unsure"],
    &["don't", "know"],
    &["dont", "know"],
    &["do", "not", "know"],
    &["no", "idea"],
    &["maybe"],
    &["perhaps"],
    &["depends"],
    &["can't", "say"],
    &["cant", "say"],
    &["hard", "to", "say"],
    &["no", "sé"],
    &["no", "se"],
    &["no", "lo", "sé"],
    &["no", "lo", "se"],
    &["quizás"],
    &["quizas"],
    &["tal", "vez"],
    &["não", "sei"],
    &["nao", "sei"],
    &["talvez"],
    &["ne", "sais", "pas"],
    &["peut", "être"],
    &["weiß", "nicht"],
    &["weiss", "nicht"],
    &["keine", "ahnung"],
    &["vielleicht"],
    &["non", "lo", "so"],
    &["non", "so"],
    &["forse"],
];

/// Ways of asking for the question again, which answer neither yes nor no ("I didn't hear
/// you" is no "no", "I'm not sure what you mean" no "not sure").
const ASKS_AGAIN: &[&[&str]] = &[
    &["don't", "understand"],
    &["dont", "understand"],
    &["do", "not", "understand"],
    &["didn't", "understand"],
    &["didnt", "understand"],
    &["what", "you", "mean"],
    &["what", "do", "you", "mean"],
    &["what", "that", "means"],
    &["what", "you're", "asking"],
    &["didn't", "hear"],
    &["didnt", "hear"],
    &["didn't", "catch"],
    &["didnt", "catch"],
    &["can't", "hear"],
    &["cant", "hear"],
    &["come", "again"],
    &["say", "that", "again"],
    &["repeat"],
];

/// Whether `w` holds one of `phrases` somewhere that `keep` (the phrase, and the words after
/// it) allows.
fn holds_phrase(
    w: &[String],
    phrases: &[&[&str]],
    keep: impl Fn(&[&str], &[String]) -> bool,
) -> bool {
    (0..w.len()).any(|i| {
        phrases
            .iter()
            .any(|p| starts_with(&w[i..], p) && keep(p, &w[i + p.len()..]))
    })
}

/// Whether words hold an [`UNSURE`] phrase, except "I don't know how to ..." (that is a no:
/// "Can you drive a forklift?" "I don't know how to").
fn says_unsure(w: &[String]) -> bool {
    holds_phrase(w, UNSURE, |phrase, after| {
        phrase.last() != Some(&"know") || after.first().is_none_or(|n| n != "how")
    })
}

/// Whether words ask for the question again ("I didn't hear you", "what do you mean").
fn asks_again_of(w: &[String]) -> bool {
    holds_phrase(w, ASKS_AGAIN, |_, _| true)
}

/// Whether words say the caller does not know, and do not ask for the question again
/// ("I'm not sure what you mean" does).
fn unsure_of(w: &[String]) -> bool {
    says_unsure(w) && !asks_again_of(w)
}

/// Whether `text` says the caller does not know ("I'm not sure", "maybe", "no idea"): an
/// answer that is neither yes nor no, and no number.
pub fn is_unsure(text: &str) -> bool {
    unsure_of(&words(text))
}

/// A yes/no reading of the caller's words, from the first decisive word ("no I don't" is no,
/// "yes I do" is yes, "I do" and "I have" are yes); none when they say they do not know or ask
/// for the question again.
pub fn parse_yes_no(text: &str) -> Option<bool> {
    yes_no_of(&words(text))
}

/// [`parse_yes_no`] of words already split.
fn yes_no_of(w: &[String]) -> Option<bool> {
    if says_unsure(w) || asks_again_of(w) {
        return None;
    }
    decisive_yes_no(w)
}

/// The yes or no of the first decisive word, not asking whether the words say the caller does
/// not know.
fn decisive_yes_no(w: &[String]) -> Option<bool> {
    for (i, word) in w.iter().enumerate() {
        if NO_WORDS.contains(&word.as_str()) || NO_ABROAD.contains(&word.as_str()) {
            return Some(false);
        }
        if YES_WORDS.contains(&word.as_str()) || YES_ABROAD.contains(&word.as_str()) {
            // "of course" / "yes" / "sure" unless negated right after ("sure not")
            if w.get(i + 1).map(|n| n == "not").unwrap_or(false) {
                return Some(false);
            }
            return Some(true);
        }
        if word == "course" && i > 0 && w[i - 1] == "of" {
            return Some(true);
        }
    }
    // "i do", "i have", "i can", "i am", "i will" without a negation
    for pair in w.windows(2) {
        if pair[0] == "i" && ["do", "have", "can", "am", "will", "did"].contains(&pair[1].as_str())
        {
            return Some(true);
        }
    }
    None
}

/// The numbers said in one word below twenty, in order.
pub const UNITS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
/// The tens said in one word, from twenty.
pub const TENS: &[&str] = &[
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn small_number(word: &str) -> Option<f64> {
    if let Some(i) = UNITS.iter().position(|u| *u == word) {
        return Some(i as f64);
    }
    if let Some(i) = TENS.iter().position(|t| *t == word) {
        return Some((i as f64 + 2.0) * 10.0);
    }
    match word {
        "a" | "an" => None,
        "none" | "no" => None,
        "couple" => Some(2.0),
        "half" => Some(0.5),
        _ => None,
    }
}

/// The first number in the reply: digits ("5", "2.5", "40,000") or words ("twenty one",
/// "three hundred", "a couple"). `None` when there is none.
pub fn parse_number(text: &str) -> Option<f64> {
    let w = words(text);
    // digits first
    for word in &w {
        let cleaned: String = word.chars().filter(|c| *c != ',' && *c != '$').collect();
        let digits: String = cleaned
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if !digits.is_empty()
            && let Ok(v) = digits.parse::<f64>()
        {
            return Some(v);
        }
    }
    let mut i = 0;
    while i < w.len() {
        if let Some(first) = small_number(&w[i]) {
            let mut value = first;
            let mut j = i + 1;
            if first >= 20.0
                && first % 10.0 == 0.0
                && let Some(unit) = w.get(j).and_then(|x| small_number(x))
                && unit < 10.0
            {
                value += unit;
                j += 1;
            }
            if w.get(j).map(|x| x == "hundred").unwrap_or(false) {
                value *= 100.0;
                j += 1;
            } else if w.get(j).map(|x| x == "thousand").unwrap_or(false) {
                value *= 1000.0;
                j += 1;
            }
            if w.get(j).map(|x| x == "and").unwrap_or(false)
                && w.get(j + 1).map(|x| x == "a").unwrap_or(false)
                && w.get(j + 2).map(|x| x == "half").unwrap_or(false)
            {
                value += 0.5;
            }
            return Some(value);
        }
        i += 1;
    }
    None
}

/// Parse keypad digits as a number (`#` and `*` ignored).
pub fn parse_digits(digits: &str) -> Option<f64> {
    let d: String = digits.chars().filter(|c| c.is_ascii_digit()).collect();
    if d.is_empty() { None } else { d.parse().ok() }
}

const FILLERS: &[&str] = &[
    "um", "uh", "er", "hmm", "well", "hi", "hello", "hey", "yes", "yeah", "oh", "so", "okay", "ok",
    "sure",
];
const NOT_A_NAME: &[&str] = &[
    "no", "not", "what", "why", "who", "the", "a", "an", "is", "it", "and", "i", "you", "sorry",
    "pardon", "repeat", "again", "calling", "here", "there", "job", "about",
];

pub(super) fn title_case(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `w` begins with the words of `phrase`.
fn starts_with(w: &[String], phrase: &[&str]) -> bool {
    phrase.len() <= w.len() && phrase.iter().zip(w).all(|(a, b)| *a == b.as_str())
}

/// Strip fillers and a lead-in phrase (the longest that matches, from any of the groups); what remains, up to `max` words.
fn after_lead_in<'a>(w: &'a [String], lead_ins: &[&[&[&str]]], max: usize) -> Vec<&'a str> {
    let lead_ins = || lead_ins.iter().flat_map(|group| group.iter());
    let mut start = 0;
    loop {
        if start < w.len() && FILLERS.contains(&w[start].as_str()) {
            start += 1;
        } else if let Some(g) = GREETINGS_ABROAD
            .iter()
            .find(|g| starts_with(&w[start..], g))
        {
            start += g.len();
        } else {
            break;
        }
    }
    let rest = &w[start..];
    let mut best = 0;
    for lead in lead_ins() {
        if starts_with(rest, lead) && lead.len() > best {
            best = lead.len();
        }
    }
    // a lead-in can also appear later: "hi there my name is john"
    if best == 0 {
        for s in 0..rest.len() {
            for lead in lead_ins() {
                if lead.len() >= 2 && starts_with(&rest[s..], lead) {
                    return rest[s + lead.len()..]
                        .iter()
                        .take(max)
                        .map(|s| s.as_str())
                        .collect();
                }
            }
        }
    }
    rest[best..].iter().take(max).map(|s| s.as_str()).collect()
}

/// The caller's name from "my name is John Smith", "this is Maria", "I'm Ana Lopez", or just
/// "John Smith". `None` when the reply does not sound like a name.
pub fn extract_name(text: &str) -> Option<String> {
    let w = words(text);
    let leads: &[&[&str]] = &[
        &["my", "name", "is"],
        &["my", "name's"],
        &["name", "is"],
        &["my", "full", "name", "is"],
        &["this", "is"],
        &["i", "am"],
        &["i'm"],
        &["it's"],
        &["it", "is"],
        &["call", "me"],
        &["they", "call", "me"],
    ];
    let mut name: Vec<&str> = after_lead_in(&w, &[leads, NAME_LEADS_ABROAD], 4);
    // stop at a connective: "john smith and i am calling about ..."
    if let Some(pos) = name
        .iter()
        .position(|x| ["and", "i", "i'm", "calling", "from"].contains(x) || AND_ABROAD.contains(x))
    {
        name.truncate(pos);
    }
    name.truncate(3);
    if name.is_empty()
        || name.iter().any(|x| NOT_A_NAME.contains(x))
        || name.iter().any(|x| {
            !x.chars()
                .all(|c| c.is_alphabetic() || c == '\'' || c == '-')
        })
    {
        return None;
    }
    Some(title_case(&name))
}

/// Words a speaker does not stop on when they are done: "and", "um" ...
const GOES_ON: &[&str] = &[
    "and", "or", "but", "so", "because", "um", "umm", "uh", "er", "like",
];
/// ... and, unless they just said yes or no, "my name is", "I live in".
const LEADS_ON: &[&str] = &[
    "is", "are", "am", "was", "my", "the", "a", "an", "to", "of", "in", "at", "on", "from", "with",
    "for", "name", "number", "it's", "i'm", "i", "me", "about",
];

/// Whether the words so far sound like a whole turn, given what was asked: `Some(false)` when
/// they stop on a word that leads on ("my name is", "I live in", "and", "um"), `Some(true)` when
/// they already answer a yes-or-no question ("yes, I am"), `None` when words cannot tell (how it
/// was said must: the end-of-turn model).
pub fn sounds_finished(text: &str, expect: super::Expect) -> Option<bool> {
    let w = words(text);
    let last = w.last()?.as_str();
    if GOES_ON.contains(&last) {
        return Some(false);
    }
    if expect == super::Expect::Answer(QuestionKind::YesNo) && parse_yes_no(text).is_some() {
        return Some(true);
    }
    if expect == super::Expect::CallerQuestion && is_only_done(text) {
        return Some(true);
    }
    if LEADS_ON.contains(&last) {
        return Some(false);
    }
    if expect == super::Expect::Name {
        // "Maria de ...", "Ludwig van ...": the surname is still to come
        if NAME_PARTICLES.contains(&last) {
            return Some(false);
        }
        // a first and a last name answer "may I have your first and last name?" (a first name
        // alone may be followed by the rest after a pause: how it was said decides)
        if extract_name(text).is_some_and(|n| n.split(' ').count() >= 2) {
            return Some(true);
        }
    }
    if expect == super::Expect::Location {
        // "New ...", "San ...", "Fort ...": the place's name is still to come
        if PLACE_PARTICLES.contains(&last) {
            return Some(false);
        }
        // "I live in Denver", "Chicago": a place answers "which city or area do you live in?"
        if extract_location(text).is_some() {
            return Some(true);
        }
    }
    None
}

/// Words that begin a place's name, the rest of which follows.
const PLACE_PARTICLES: &[&str] = &[
    "new", "san", "santa", "los", "las", "el", "la", "saint", "st", "fort", "ft", "port", "mount",
    "mt", "lake", "salt", "palm", "grand", "little", "east", "west", "north", "south", "upper",
    "lower", "glen", "baton", "des", "de", "del", "le",
];

/// Words inside a name that the rest of the name follows.
const NAME_PARTICLES: &[&str] = &[
    "de", "la", "del", "della", "van", "von", "der", "den", "da", "di", "du", "le", "st", "mc",
    "mac", "bin", "ibn", "al", "el", "dos", "das", "y",
];

/// The caller's city or area from "I live in Chicago", "I'm in the Bronx", "near Dallas", or just
/// "Chicago".
pub fn extract_location(text: &str) -> Option<String> {
    let w = words(text);
    let leads: &[&[&str]] = &[
        &["i", "live", "in"],
        &["i", "live", "near"],
        &["i", "live", "at"],
        &["i'm", "in"],
        &["i", "am", "in"],
        &["i'm", "from"],
        &["i", "am", "from"],
        &["i'm", "located", "in"],
        &["i", "am", "located", "in"],
        &["i'm", "based", "in"],
        &["located", "in"],
        &["based", "in"],
        &["from"],
        &["in"],
        &["near"],
        &["it's"],
        &["it", "is"],
    ];
    let mut place: Vec<&str> = after_lead_in(&w, &[leads, PLACE_LEADS_ABROAD], 5);
    while place.first().map(|x| *x == "the").unwrap_or(false) {
        place.remove(0);
    }
    if let Some(pos) = place
        .iter()
        .position(|x| ["and", "but", "so"].contains(x) || AND_ABROAD.contains(x))
    {
        place.truncate(pos);
    }
    place.truncate(4);
    if place.is_empty()
        || place
            .iter()
            .all(|x| ["no", "not", "what", "sorry", "i", "don't", "know"].contains(x))
    {
        return None;
    }
    Some(title_case(&place))
}

/// Replies that mean "no more questions" / "that's all".
const DONE: [&str; 16] = [
    "no",
    "nope",
    "nah",
    "no thanks",
    "no thank you",
    "that's all",
    "that's it",
    "nothing",
    "i'm good",
    "i'm fine",
    "all good",
    "not really",
    "i don't",
    "none",
    "goodbye",
    "bye",
];

/// Whether the reply means "no more questions" / "that's all".
pub fn is_done(text: &str) -> bool {
    let n = normalize(text);
    let w: Vec<&str> = n.split_whitespace().collect();
    if w.is_empty() {
        return false;
    }
    DONE.iter()
        .any(|p| n == *p || n.starts_with(&format!("{p} ")))
        || (w.len() <= 4 && w[0] == "no" && !n.contains('?'))
}

/// The reply is nothing but "no more questions" ("no, thank you", "that's all, thanks", "no,
/// that's it"), thanks included (a recogniser may repeat them: "no thank you thank"): a whole
/// turn, with nothing after it to wait for. Stricter than [`is_done`]: "no, wait" or "no, but
/// what about pay" go on.
fn is_only_done(text: &str) -> bool {
    const THANKS: [&str; 6] = ["thank", "thanks", "you", "very", "much", "so"];
    let n = normalize(text);
    let (polite, core): (Vec<&str>, Vec<&str>) =
        n.split_whitespace().partition(|w| THANKS.contains(w));
    let thanked = polite.iter().any(|w| *w == "thank" || *w == "thanks");
    match core.as_slice() {
        [] => thanked,
        ["no", rest @ ..] if !rest.is_empty() => DONE.contains(&rest.join(" ").as_str()),
        words => DONE.contains(&words.join(" ").as_str()),
    }
}

/// The answer value for a question kind from spoken words; `None` when unclear (the question is
/// asked again). A caller who says they do not know ("I'm not sure", "no idea") has answered:
/// [`AnswerValue::Unclear`], for the recruiter to go over, not a no and not asked again.
pub fn understand(kind: QuestionKind, text: &str) -> Option<AnswerValue> {
    match kind {
        QuestionKind::YesNo => {
            let w = words(text);
            if asks_again_of(&w) {
                None
            } else if says_unsure(&w) {
                Some(AnswerValue::Unclear)
            } else {
                decisive_yes_no(&w).map(|y| if y { AnswerValue::Yes } else { AnswerValue::No })
            }
        }
        // "not sure, maybe five years" is five
        QuestionKind::Number => parse_number(text)
            .map(AnswerValue::Number)
            .or_else(|| is_unsure(text).then_some(AnswerValue::Unclear)),
        QuestionKind::FreeText => {
            let t = text.trim();
            if normalize(t).is_empty() {
                None
            } else {
                Some(AnswerValue::Text(t.to_string()))
            }
        }
    }
}

/// The answer value from keypad digits: 1 = yes, 2 = no; numbers as typed.
pub fn understand_dtmf(kind: QuestionKind, digits: &str) -> Option<AnswerValue> {
    match kind {
        QuestionKind::YesNo => match digits.trim_end_matches('#') {
            "1" => Some(AnswerValue::Yes),
            "2" => Some(AnswerValue::No),
            _ => None,
        },
        QuestionKind::Number => parse_digits(digits).map(AnswerValue::Number),
        QuestionKind::FreeText => None,
    }
}

/// A parsed `expected` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    Yes,
    No,
    Compare(Cmp, f64),
    Range(f64, f64),
    Keywords(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Eq,
    Ge,
    Le,
    Gt,
    Lt,
}

/// Parse a recruiter's `expected` for a question kind. Errors name what is wrong.
pub fn parse_expected(kind: QuestionKind, expected: &str) -> Result<Expectation, String> {
    let e = expected.trim();
    match kind {
        QuestionKind::YesNo => match e.to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" => Ok(Expectation::Yes),
            "no" | "n" | "false" => Ok(Expectation::No),
            _ => Err(format!(
                "expected must be \"yes\" or \"no\" for a yes_no question, not {e:?}"
            )),
        },
        QuestionKind::Number => {
            let num = |s: &str| -> Result<f64, String> {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("{:?} is not a number", s.trim()))
            };
            for (prefix, cmp) in [
                (">=", Cmp::Ge),
                ("<=", Cmp::Le),
                (">", Cmp::Gt),
                ("<", Cmp::Lt),
                ("=", Cmp::Eq),
            ] {
                if let Some(rest) = e.strip_prefix(prefix) {
                    return Ok(Expectation::Compare(cmp, num(rest)?));
                }
            }
            // a range "18-65" (but not a negative number "-5")
            if let Some((pos, _)) = e.char_indices().skip(1).find(|(_, c)| *c == '-') {
                let lo = num(&e[..pos])?;
                let hi = num(&e[pos + 1..])?;
                if lo > hi {
                    return Err(format!("range {e:?} has its low end above its high end"));
                }
                return Ok(Expectation::Range(lo, hi));
            }
            Ok(Expectation::Compare(Cmp::Eq, num(e).map_err(|_| {
                format!(
                    "expected must be a number, a comparison such as \">= 2\", or a range such as \"18-65\", not {e:?}"
                )
            })?))
        }
        QuestionKind::FreeText => Ok(Expectation::Keywords(
            e.split(',')
                .map(normalize)
                .filter(|k| !k.is_empty())
                .collect(),
        )),
    }
}

/// Whether an answer meets the expectation; `None` when there is nothing to judge.
pub fn meets(expectation: &Expectation, value: &AnswerValue) -> Option<bool> {
    match (expectation, value) {
        (_, AnswerValue::Unclear) => None,
        (Expectation::Yes, AnswerValue::Yes) | (Expectation::No, AnswerValue::No) => Some(true),
        (Expectation::Yes, AnswerValue::No) | (Expectation::No, AnswerValue::Yes) => Some(false),
        (Expectation::Compare(cmp, x), AnswerValue::Number(v)) => Some(match cmp {
            Cmp::Eq => (v - x).abs() < 1e-9,
            Cmp::Ge => v >= x,
            Cmp::Le => v <= x,
            Cmp::Gt => v > x,
            Cmp::Lt => v < x,
        }),
        (Expectation::Range(lo, hi), AnswerValue::Number(v)) => Some(v >= lo && v <= hi),
        (Expectation::Keywords(k), AnswerValue::Text(t)) => {
            if k.is_empty() {
                None
            } else {
                let n = normalize(t);
                Some(k.iter().any(|kw| n.contains(kw.as_str())))
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_words_beyond_backchannels_and_fillers_take_the_floor() {
        for not in [
            "",
            "uh huh",
            "Okay.",
            "mm hmm",
            "and",
            "Thank you.",
            "you",
            "yeah right",
            // the common acknowledgements, word by word
            "Yes.",
            "All right.",
            "Exactly.",
            "I understand.",
            "Okay, great.",
            "Uh-huh, yes.",
            "Aha.",
            "Gotcha.",
            "Makes sense.",
            "Sounds good.",
            "Of course.",
            "Perfect.",
            // what Whisper tiny makes of the start of a "mm-hmm" (scripts/barge-in-words)
            "m",
            "m m",
            "mn",
            "n",
        ] {
            assert!(!takes_the_floor(not), "{not:?}");
        }
        for yes in [
            "wait",
            "No.",
            "sorry which job is this",
            "hold on",
            "what",
            "I don't understand.",
            "Is that true?",
            "Good morning, I have a question.",
            "yes but what about the pay",
        ] {
            assert!(takes_the_floor(yes), "{yes:?}");
        }
    }

    #[test]
    fn the_words_that_open_an_interruption_are_whole_words() {
        for said in [
            "Sorry, which job?",
            "wait",
            "Hold on a second.",
            "excuse me",
            "HEY",
        ] {
            assert!(opens_an_interruption(said), "{said:?}");
        }
        for said in ["uh huh", "okay", "waiting", "holder", "and make it", ""] {
            assert!(!opens_an_interruption(said), "{said:?}");
        }
    }

    #[test]
    fn only_the_short_forms_of_the_same_answer_restate_a_yes_or_a_no() {
        for said in [
            "I am.",
            "i",
            "Yes, I am",
            "yeah I can",
            "I do",
            "sure",
            "That's right.",
        ] {
            assert!(restates_yes_no(true, said), "{said:?} after a yes");
        }
        for said in [
            "I'm not.",
            "no",
            "but only on weekends",
            "what is the pay",
            "I am over eighteen",
            "",
        ] {
            assert!(!restates_yes_no(true, said), "{said:?} after a yes");
        }
        for said in ["I don't.", "no I'm not", "I can't", "nope"] {
            assert!(restates_yes_no(false, said), "{said:?} after a no");
        }
        for said in ["I am", "yes I do", "no but I can learn"] {
            assert!(!restates_yes_no(false, said), "{said:?} after a no");
        }
    }

    #[test]
    fn a_backchannel_cut_short_is_read_as_one_and_nothing_else_is() {
        let read = |t: &str| backchannel_cut_short(t);
        assert_eq!(read("go").as_deref(), Some("got"));
        assert_eq!(read("uh ri").as_deref(), Some("uh right"));
        assert_eq!(read("okay").as_deref(), Some("okay"));
        assert_eq!(
            read("what go"),
            None,
            "a word that takes the floor before the last"
        );
        assert_eq!(
            read("okay wait"),
            None,
            "the last word begins no backchannel"
        );
        assert_eq!(read("n o"), None, "letters are no backchannel");
        assert_eq!(read("so"), None, "a filler is no backchannel");
        assert_eq!(read("i"), None);
        assert_eq!(read(""), None);
    }

    #[test]
    fn words_that_lead_on_are_no_end_of_turn_and_a_yes_is() {
        use crate::engine::dialogue::Expect;
        let yes_no = Expect::Answer(QuestionKind::YesNo);
        assert_eq!(sounds_finished("my name is", Expect::Name), Some(false));
        assert_eq!(sounds_finished("I live in", Expect::Location), Some(false));
        assert_eq!(sounds_finished("yes and um", yes_no), Some(false));
        assert_eq!(sounds_finished("Yes, I am.", yes_no), Some(true));
        assert_eq!(sounds_finished("no", yes_no), Some(true));
        // a first name or a number may go on after a pause: how it was said decides
        assert_eq!(sounds_finished("my name is maria", Expect::Name), None);
        // a first and a last name are the whole answer, unless the last word leads on
        assert_eq!(
            sounds_finished("My name is Peter Novert.", Expect::Name),
            Some(true)
        );
        assert_eq!(sounds_finished("john smith", Expect::Name), Some(true));
        assert_eq!(sounds_finished("maria de", Expect::Name), Some(false));
        assert_eq!(sounds_finished("ludwig van", Expect::Name), Some(false));
        assert_eq!(sounds_finished("what was that", Expect::Name), None);
        assert_eq!(
            sounds_finished("i live in denver", Expect::Location),
            Some(true)
        );
        assert_eq!(sounds_finished("Chicago.", Expect::Location), Some(true));
        assert_eq!(
            sounds_finished("i live in new", Expect::Location),
            Some(false)
        );
        assert_eq!(sounds_finished("san", Expect::Location), Some(false));
        assert_eq!(sounds_finished("i don't know", Expect::Location), None);
        assert_eq!(
            sounds_finished("john smith", Expect::Answer(QuestionKind::Number)),
            None
        );
        assert_eq!(
            sounds_finished("five five five", Expect::Answer(QuestionKind::Number)),
            None
        );
        assert_eq!(sounds_finished("", Expect::Name), None);
        // "no more questions" ends the turn at once; "no, but ..." does not
        for done in [
            "No, thank you.",
            "no",
            "That's all, thanks.",
            "no that's it",
            "nope",
            "no thank you thank",
            "thank you very much",
        ] {
            assert_eq!(
                sounds_finished(done, Expect::CallerQuestion),
                Some(true),
                "{done}"
            );
        }
        for more in [
            "no wait",
            "no but what about the pay",
            "what is the pay",
            "you",
        ] {
            assert_eq!(
                sounds_finished(more, Expect::CallerQuestion),
                None,
                "{more}"
            );
        }
        assert_eq!(
            sounds_finished("no but", Expect::CallerQuestion),
            Some(false)
        );
    }

    #[test]
    fn backchannels() {
        assert!(is_backchannel("Uh-huh.", false));
        assert!(is_backchannel("mm hmm", false));
        assert!(!is_backchannel("okay", false));
        assert!(is_backchannel("okay, I see", true));
        assert!(!is_backchannel("okay I live in chicago", true));
        assert!(!is_backchannel("", true));
        // over a statement "yes" acknowledges; to the question that was cut off it answers
        assert!(is_backchannel("Yes.", true));
        assert!(!is_backchannel("Yes.", false));
        assert!(is_backchannel("All right, sounds good.", true));
        assert!(is_backchannel("Sure thing.", true));
        assert!(!takes_the_floor("sure thing"));
        assert!(takes_the_floor("one more thing"));
    }

    #[test]
    fn yes_no() {
        for y in [
            "yes",
            "Yeah, I do.",
            "sure",
            "of course",
            "I have",
            "yes i do",
            "correct",
        ] {
            assert_eq!(parse_yes_no(y), Some(true), "{y}");
        }
        for n in [
            "no",
            "nope",
            "I don't",
            "no I don't",
            "not really",
            "I do not",
            "never",
        ] {
            assert_eq!(parse_yes_no(n), Some(false), "{n}");
        }
        for u in ["", "banana", "what was the question"] {
            assert_eq!(parse_yes_no(u), None, "{u}");
        }
    }

    #[test]
    fn not_knowing_is_neither_yes_nor_no() {
        for u in [
            "I'm not sure.",
            "i am not really sure",
            "I don't know.",
            "No idea.",
            "Maybe.",
            "Yes, maybe.",
            "It depends.",
            "Hmm, I can't say.",
            "No sé.",
            "Não sei.",
            "Je ne sais pas.",
            "Ich weiß nicht.",
        ] {
            assert_eq!(parse_yes_no(u), None, "{u}");
            assert!(is_unsure(u), "{u}");
            assert_eq!(
                understand(QuestionKind::YesNo, u),
                Some(AnswerValue::Unclear),
                "{u}"
            );
        }
        // knowing how is the skill: "I don't know how to" is a no
        assert_eq!(parse_yes_no("I don't know how to drive one."), Some(false));
        assert!(!is_unsure("I don't know how to drive one."));
        // a number said unsurely is the number; none at all is a caller who does not know
        assert_eq!(
            understand(QuestionKind::Number, "Not sure, maybe five years."),
            Some(AnswerValue::Number(5.0))
        );
        assert_eq!(
            understand(QuestionKind::Number, "I don't know."),
            Some(AnswerValue::Unclear)
        );
        // what is neither, and not unsure, is asked again
        assert_eq!(understand(QuestionKind::YesNo, "banana"), None);
        // and so is a caller who asks for the question again, though the words hold "not",
        // "didn't" or "don't"
        for again in [
            "I'm not sure what you mean.",
            "Sorry, I didn't hear you.",
            "I don't understand the question.",
            "What do you mean?",
            "No, can you repeat that?",
        ] {
            assert_eq!(parse_yes_no(again), None, "{again}");
            assert!(!is_unsure(again), "{again}");
            assert_eq!(understand(QuestionKind::YesNo, again), None, "{again}");
            assert_eq!(understand(QuestionKind::Number, again), None, "{again}");
        }
        assert_eq!(understand(QuestionKind::Number, "hmm"), None);
        // "not" and "no" still say no
        for n in ["No, I'm sure.", "Not really.", "Surely not."] {
            assert_eq!(parse_yes_no(n), Some(false), "{n}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("five"), Some(5.0));
        assert_eq!(parse_number("three years"), Some(3.0));
        assert_eq!(parse_number("about twenty one"), Some(21.0));
        assert_eq!(parse_number("I have 12 years"), Some(12.0));
        assert_eq!(parse_number("$40,000"), Some(40000.0));
        assert_eq!(parse_number("two and a half"), Some(2.5));
        assert_eq!(parse_number("a couple of years"), Some(2.0));
        assert_eq!(parse_number("three hundred"), Some(300.0));
        assert_eq!(parse_number("none of your business"), None);
        assert_eq!(parse_digits("12#"), Some(12.0));
    }

    #[test]
    fn names() {
        assert_eq!(
            extract_name("my name is john smith").as_deref(),
            Some("John Smith")
        );
        assert_eq!(extract_name("Um, this is Maria.").as_deref(), Some("Maria"));
        assert_eq!(extract_name("I'm Ana Lopez").as_deref(), Some("Ana Lopez"));
        assert_eq!(extract_name("john smith").as_deref(), Some("John Smith"));
        assert_eq!(
            extract_name("hi there my name is john and i am calling about the job").as_deref(),
            Some("John")
        );
        assert_eq!(extract_name("what"), None);
        assert_eq!(extract_name(""), None);
        assert_eq!(extract_name("no"), None);
    }

    #[test]
    fn locations() {
        assert_eq!(
            extract_location("i live in chicago").as_deref(),
            Some("Chicago")
        );
        assert_eq!(
            extract_location("I'm in the Bronx").as_deref(),
            Some("Bronx")
        );
        assert_eq!(
            extract_location("san antonio").as_deref(),
            Some("San Antonio")
        );
        assert_eq!(extract_location("i don't know"), None);
    }

    #[test]
    fn a_caller_in_another_language_is_understood_in_the_commonest_words() {
        // what the multilingual recogniser writes for a Spanish, French, Portuguese, German
        // and Italian caller
        let names = [
            (
                "Buenos días. Me llamo María López y quisiera información sobre el trabajo.",
                "María López",
            ),
            ("Hola, soy Juan Pérez.", "Juan Pérez"),
            ("Bonjour, je m'appelle Émile Durand.", "Émile Durand"),
            ("Bom dia, meu nome é João Silva.", "João Silva"),
            (
                "Guten Tag, ich heiße Jürgen Müller und ich suche Arbeit.",
                "Jürgen Müller",
            ),
            ("Buongiorno, mi chiamo Giulia Rossi.", "Giulia Rossi"),
            ("MARÍA LÓPEZ", "María López"),
        ];
        for (said, name) in names {
            assert_eq!(extract_name(said).as_deref(), Some(name), "{said}");
        }
        let places = [
            ("Vivo en Sacramento.", "Sacramento"),
            ("Buenas tardes, vivo en San José y tengo coche.", "San José"),
            ("J'habite à Montréal.", "Montréal"),
            ("Moro em Newark.", "Newark"),
            ("Ich wohne in Hamburg.", "Hamburg"),
        ];
        for (said, place) in places {
            assert_eq!(extract_location(said).as_deref(), Some(place), "{said}");
        }
        let yes_no = [
            ("Sí, tengo más de dieciocho años.", Some(true)),
            ("Oui, bien sûr.", Some(true)),
            ("Sim.", Some(true)),
            ("Ja, genau.", Some(true)),
            ("No, todavía no.", Some(false)),
            ("Non, merci.", Some(false)),
            ("Não.", Some(false)),
            ("Nein.", Some(false)),
            ("Claro que sí.", Some(true)),
            ("Bueno, pues...", None),
        ];
        for (said, meaning) in yes_no {
            assert_eq!(parse_yes_no(said), meaning, "{said}");
        }
        // and English answers read as before, names that are words elsewhere too
        assert_eq!(
            extract_name("Dia Martinez").as_deref(),
            Some("Dia Martinez")
        );
        assert_eq!(
            extract_name("ola nordmann").as_deref(),
            Some("Ola Nordmann")
        );
        assert_eq!(
            extract_name("my name is ja smith").as_deref(),
            Some("Ja Smith")
        );
        assert_eq!(
            extract_location("i live in san antonio").as_deref(),
            Some("San Antonio")
        );
    }

    #[test]
    fn done_phrases() {
        assert!(is_done("no thank you"));
        assert!(is_done("No."));
        assert!(is_done("that's all"));
        assert!(!is_done("what is the pay"));
        assert!(!is_done(""));
    }

    #[test]
    fn expectations() {
        let e = parse_expected(QuestionKind::Number, ">= 2").unwrap();
        assert_eq!(meets(&e, &AnswerValue::Number(3.0)), Some(true));
        assert_eq!(meets(&e, &AnswerValue::Number(1.0)), Some(false));
        let r = parse_expected(QuestionKind::Number, "18-65").unwrap();
        assert_eq!(r, Expectation::Range(18.0, 65.0));
        assert_eq!(
            parse_expected(QuestionKind::Number, "5").unwrap(),
            Expectation::Compare(Cmp::Eq, 5.0)
        );
        assert!(parse_expected(QuestionKind::Number, "lots").is_err());
        assert!(parse_expected(QuestionKind::Number, "65-18").is_err());
        assert!(parse_expected(QuestionKind::YesNo, "maybe").is_err());
        assert!(parse_expected(QuestionKind::Number, "é-5").is_err());
        assert!(parse_expected(QuestionKind::Number, "-").is_err());
        let k = parse_expected(QuestionKind::FreeText, "forklift, warehouse").unwrap();
        assert_eq!(
            meets(&k, &AnswerValue::Text("I worked in a Warehouse".into())),
            Some(true)
        );
        assert_eq!(meets(&k, &AnswerValue::Unclear), None);
    }

    #[test]
    fn dtmf() {
        assert_eq!(
            understand_dtmf(QuestionKind::YesNo, "1"),
            Some(AnswerValue::Yes)
        );
        assert_eq!(
            understand_dtmf(QuestionKind::YesNo, "2"),
            Some(AnswerValue::No)
        );
        assert_eq!(understand_dtmf(QuestionKind::YesNo, "7"), None);
        assert_eq!(
            understand_dtmf(QuestionKind::Number, "42#"),
            Some(AnswerValue::Number(42.0))
        );
    }
}
