pub mod inband;
pub mod prompt;
