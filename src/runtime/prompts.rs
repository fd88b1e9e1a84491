//! The dialplan's voice prompts (`media.prompts`, issue 3 point 5 and issue 4 flow 2), loaded
//! once at start and shared by every inbound maintenance call. Each prompt the dialplan names
//! replaces one generated tone cue; a cue with no prompt named keeps its tone.
//!
//! Names, and the cue each one replaces:
//!
//! | name           | played                                          | tone otherwise |
//! |----------------|-------------------------------------------------|----------------|
//! | `welcome`      | once, when the call is answered                 | none           |
//! | `enter_id`     | asking for the administrator ID                 | beep           |
//! | `enter_pin`    | asking for the PIN                              | beep           |
//! | `enter_signal` | asking for the start signal                     | beep           |
//! | `enter_digit`  | asking for the separate digit (\[0031\] variant)  | beep           |
//! | `ok`           | the start was accepted                          | confirm        |
//! | `error`        | any failure (the same for every cause)          | error          |
//! | `goodbye`      | before the gate hangs up                        | confirm        |

use std::path::PathBuf;
use std::sync::Arc;

use crate::gate::signal::{Cue as FlowCue, Item};
use crate::media::prompt::{self, PromptError};
use crate::media::tones::Cue;

pub use crate::config::PROMPT_NAMES;

/// Longest prompt kept: a minute at 8 kHz. Longer files are refused at start.
pub const MAX_PROMPT_SAMPLES: usize = 60 * 8000;

/// Why the prompts cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptSetError {
    #[error(transparent)]
    Load(#[from] PromptError),
    #[error("prompt {name} ({}) is longer than 60 s", path.display())]
    TooLong { name: String, path: PathBuf },
    #[error("prompt name {name:?} is not one of {}", PROMPT_NAMES.join(", "))]
    UnknownName { name: String },
}

/// Linear 16-bit samples at 8 kHz, shared between calls.
pub type Samples = Arc<[i16]>;

/// What one cue sounds like on a call.
#[derive(Debug, Clone)]
pub enum Sound {
    /// A generated tone cue.
    Tone(Cue),
    /// A WAV prompt.
    Prompt(Samples),
}

/// The loaded prompts, by name.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    slots: [Option<Samples>; PROMPT_NAMES.len()],
}

impl PromptSet {
    /// Load the dialplan's prompts (already resolved against the dialplan's directory).
    pub fn load<'a>(
        prompts: impl IntoIterator<Item = (&'a String, &'a PathBuf)>,
    ) -> Result<PromptSet, PromptSetError> {
        let mut set = PromptSet::default();
        for (name, path) in prompts {
            let samples = prompt::load(path)?;
            set.insert(name, samples).map_err(|e| match e {
                PromptSetError::TooLong { name, .. } => PromptSetError::TooLong {
                    name,
                    path: path.clone(),
                },
                other => other,
            })?;
        }
        Ok(set)
    }

    /// Add samples under `name` (pure: for tests and for [`load`](Self::load)).
    pub fn insert(&mut self, name: &str, samples: Vec<i16>) -> Result<(), PromptSetError> {
        let Some(i) = PROMPT_NAMES.iter().position(|n| *n == name) else {
            return Err(PromptSetError::UnknownName {
                name: name.to_string(),
            });
        };
        if samples.len() > MAX_PROMPT_SAMPLES {
            return Err(PromptSetError::TooLong {
                name: name.to_string(),
                path: PathBuf::new(),
            });
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(samples.into());
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Samples> {
        let i = PROMPT_NAMES.iter().position(|n| *n == name)?;
        self.slots.get(i)?.as_ref()
    }

    /// The welcome prompt, if the dialplan names one (it has no tone of its own).
    pub fn welcome(&self) -> Option<Sound> {
        self.get("welcome").cloned().map(Sound::Prompt)
    }

    /// What the call flow's `cue` sounds like: the named prompt, or the tone cue.
    pub fn sound(&self, cue: FlowCue) -> Sound {
        let (name, tone) = match cue {
            FlowCue::Prompt(Item::Id) => ("enter_id", Cue::Beep),
            FlowCue::Prompt(Item::Pin) => ("enter_pin", Cue::Beep),
            FlowCue::Prompt(Item::Signal) => ("enter_signal", Cue::Beep),
            FlowCue::Prompt(Item::Digit) => ("enter_digit", Cue::Beep),
            FlowCue::Ok => ("ok", Cue::Confirm),
            FlowCue::Error => ("error", Cue::Error),
            FlowCue::Goodbye => ("goodbye", Cue::Confirm),
        };
        match self.get(name) {
            Some(s) => Sound::Prompt(s.clone()),
            None => Sound::Tone(tone),
        }
    }
}

impl Sound {
    /// Length in samples at 8 kHz (`level_dbm0` only matters for the tone's envelope, not
    /// its length).
    pub fn len_samples(&self) -> usize {
        match self {
            Sound::Tone(c) => {
                usize::try_from(c.sequence(-13.0).len_samples()).unwrap_or(usize::MAX)
            }
            Sound::Prompt(s) => s.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_prompt_replaces_its_cue_and_the_others_keep_their_tones() {
        let mut set = PromptSet::default();
        set.insert("enter_pin", vec![1, 2, 3]).unwrap();
        set.insert("goodbye", vec![7; 10]).unwrap();
        assert!(
            matches!(set.sound(FlowCue::Prompt(Item::Pin)), Sound::Prompt(s) if *s == [1, 2, 3])
        );
        assert!(matches!(set.sound(FlowCue::Goodbye), Sound::Prompt(s) if s.len() == 10));
        assert!(matches!(
            set.sound(FlowCue::Prompt(Item::Id)),
            Sound::Tone(Cue::Beep)
        ));
        assert!(matches!(set.sound(FlowCue::Error), Sound::Tone(Cue::Error)));
        assert!(matches!(set.sound(FlowCue::Ok), Sound::Tone(Cue::Confirm)));
        assert!(set.welcome().is_none());
    }

    #[test]
    fn unknown_names_and_overlong_prompts_are_refused() {
        let mut set = PromptSet::default();
        assert!(matches!(
            set.insert("hello", vec![0]),
            Err(PromptSetError::UnknownName { .. })
        ));
        assert!(matches!(
            set.insert("welcome", vec![0; MAX_PROMPT_SAMPLES + 1]),
            Err(PromptSetError::TooLong { .. })
        ));
        set.insert("welcome", vec![0; MAX_PROMPT_SAMPLES]).unwrap();
        assert_eq!(set.welcome().unwrap().len_samples(), MAX_PROMPT_SAMPLES);
    }

    #[test]
    fn the_example_dialplans_welcome_prompt_loads() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dialplans/prompts/welcome.wav"
        ));
        let set = PromptSet::load([(&"welcome".to_string(), &path)]).unwrap();
        assert!(set.welcome().unwrap().len_samples() > 8000);
    }
}
