//! The texts of `chorus bench --url`: built-in sets of distinct sentences (rotated, so consecutive requests
//! differ), or a file with one text per line.

use std::path::Path;

use crate::{BenchError, Result};

/// About 40 characters each.
const SHORT: &[&str] = &[
    "Hello there, how can I help you today?",
    "Your table for two is ready at seven.",
    "The next train leaves in five minutes.",
    "Please hold while I check that for you.",
    "Thanks for calling, have a lovely day.",
    "It looks like rain later this evening.",
];

/// About 200 characters each.
const MEDIUM: &[&str] = &[
    "The museum opens at nine in the morning and closes at six. Visitors can explore the new exhibition on \
     ancient navigation, which features maps, instruments and ship models from around the world.",
    "Your order has shipped and should arrive on Thursday. If nobody is home, the driver will leave it with a \
     neighbor or at the post office, and you will get a card telling you where to collect it.",
    "To reset your password, open the settings page and choose security. Enter the code we sent to your phone, \
     then pick a new password with at least twelve characters, including a number or a symbol.",
    "Tomorrow will start cool and cloudy, with a chance of light showers before noon. The afternoon should \
     clear up nicely, and temperatures will climb to around twenty degrees by the early evening.",
];

/// About 800 characters each.
const LONG: &[&str] = &[
    "The old lighthouse stood at the edge of the cliff for more than a century, guiding fishing boats and cargo \
     ships safely past the rocks. Its keeper, a quiet man named Thomas, climbed the spiral stairs every evening \
     to light the lamp and wind the clockwork that turned the great lens. In winter the storms came in from the \
     west, and the waves threw spray as high as the gallery rail. On those nights Thomas would sit by the window \
     with a pot of tea, watching the beam sweep across the water and counting the seconds between flashes. When \
     the lighthouse was finally automated, the village held a small ceremony in his honor. Children brought \
     drawings of the tower, the mayor gave a short speech, and Thomas, who disliked speeches, simply thanked \
     everyone and said that the light had always done the real work.",
    "Getting started with the new accounting software takes only a few minutes. First, create an account using \
     your work email address, and confirm it by clicking the link we send you. Next, connect your bank accounts \
     so that transactions are imported automatically every morning. Once your transactions appear, the \
     software suggests a category for each one based on the merchant and the amount. Review these suggestions \
     carefully during the first week, because every correction you make teaches the system your preferences. \
     At the end of each month, open the reports page to see a summary of income and expenses, a comparison \
     with previous months, and a list of unusual payments. If you get stuck at any point, the help center has \
     short videos covering every feature.",
    "Bees are among the most important pollinators on the planet, and their story is more remarkable than most \
     people realize. A single colony can contain tens of thousands of workers, all daughters of one queen, each \
     with a job that changes as she grows older. Young bees clean the cells and feed the larvae; middle-aged \
     bees build comb, guard the entrance and process nectar into honey; the oldest bees fly out to forage, \
     sometimes traveling several kilometers from the hive. When a forager finds a rich patch of flowers, she \
     returns and performs a dance on the comb that tells her sisters the direction and distance of the food. \
     Sadly, many bee populations are under pressure from habitat loss, disease and pesticides, which is why \
     planting flowers and leaving some wild corners in gardens really does help.",
];

/// The texts of a run and the name it was asked by.
#[derive(Debug, Clone)]
pub struct Texts {
    pub name: String,
    pub texts: Vec<String>,
}

impl Texts {
    /// `short`, `medium`, `long`, or a file with one text per line (blank lines skipped).
    pub fn load(spec: &str) -> Result<Self> {
        let builtin = match spec {
            "short" => Some(SHORT),
            "medium" => Some(MEDIUM),
            "long" => Some(LONG),
            _ => None,
        };
        let texts: Vec<String> = match builtin {
            Some(set) => set.iter().map(|s| (*s).to_owned()).collect(),
            None => {
                let path = Path::new(spec);
                let content = std::fs::read_to_string(path).map_err(|e| {
                    let what = format!(
                        "--texts {spec}: not short, medium, long, nor a readable file of one text per line"
                    );
                    BenchError::io(what, e)
                })?;
                content.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
            }
        };
        if texts.is_empty() {
            return Err(BenchError::Usage(format!("--texts {spec}: no text")));
        }
        Ok(Self { name: spec.to_owned(), texts })
    }

    /// The text of the `k`-th request.
    pub fn get(&self, k: usize) -> &str {
        &self.texts[k % self.texts.len()]
    }

    pub fn mean_chars(&self) -> f64 {
        self.texts.iter().map(|t| t.chars().count()).sum::<usize>() as f64 / self.texts.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets_have_the_advertised_lengths_and_differ() {
        for (name, lo, hi) in [("short", 30, 50), ("medium", 170, 230), ("long", 700, 900)] {
            let t = Texts::load(name).unwrap();
            assert!(t.texts.len() >= 3, "{name}");
            for s in &t.texts {
                let n = s.chars().count();
                assert!((lo..=hi).contains(&n), "{name}: {n} chars: {s}");
                assert!(!s.contains("  "), "{name}: a doubled space: {s}");
            }
            assert_ne!(t.get(0), t.get(1));
            assert_eq!(t.get(0), t.get(t.texts.len()));
        }
    }

    #[test]
    fn a_file_gives_one_text_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("texts.txt");
        std::fs::write(&path, "One.\n\n  Two words.  \n").unwrap();
        let t = Texts::load(path.to_str().unwrap()).unwrap();
        assert_eq!(t.texts, ["One.", "Two words."]);
        assert!(Texts::load(dir.path().join("missing").to_str().unwrap()).is_err());
        std::fs::write(&path, "\n\n").unwrap();
        assert!(Texts::load(path.to_str().unwrap()).is_err());
    }
}
