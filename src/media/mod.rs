pub mod inband;
