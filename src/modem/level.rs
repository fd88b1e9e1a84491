//! Signal levels in dBm0 for 16-bit linear samples that travel as G.711.
//!
//! ITU-T G.711 puts the theoretical load capacity at +3.17 dBm0 (μ-law) / +3.14 dBm0
//! (A-law). We take +3.14 dBm0 for a full-scale (±32767) sine, the convention spandsp also
//! uses, so a 0 dBm0 sine has a peak of about 22 826. Pure arithmetic, no state.

/// Level of a full-scale sine in dBm0 (G.711 A-law theoretical load capacity).
#[allow(clippy::approx_constant)] // a level in dB that happens to look like pi
pub const FULL_SCALE_SINE_DBM0: f32 = 3.14;

/// Peak amplitude of a sine at `dbm0`.
pub fn sine_peak(dbm0: f32) -> f32 {
    32767.0 * db_to_amplitude(dbm0 - FULL_SCALE_SINE_DBM0)
}

/// Mean square (in sample units squared) of any signal at `dbm0`.
pub fn mean_square(dbm0: f32) -> f32 {
    let peak = sine_peak(dbm0);
    peak * peak / 2.0
}

/// Level in dBm0 of a signal with mean square `ms` (sample units squared); very low for 0.
pub fn dbm0_of_mean_square(ms: f32) -> f32 {
    let full = mean_square(0.0);
    10.0 * (ms.max(1e-12) / full).log10()
}

/// Level in dBm0 of a block of samples (mean square); very low for an empty block.
pub fn dbm0_of(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return dbm0_of_mean_square(0.0);
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    dbm0_of_mean_square((sum / samples.len() as f64) as f32)
}

/// Amplitude ratio for a level difference in dB.
pub fn db_to_amplitude(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_dbm0_sine_peak_matches_g711_load_capacity() {
        let p = sine_peak(0.0);
        assert!((p - 22_826.0).abs() < 5.0, "{p}");
    }

    #[test]
    fn level_of_generated_sine_round_trips() {
        let a = sine_peak(-12.0);
        let s: Vec<i16> = (0..8000)
            .map(|n| (a * (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 8000.0).sin()) as i16)
            .collect();
        assert!((dbm0_of(&s) + 12.0).abs() < 0.05);
    }

    #[test]
    fn empty_and_silent_blocks_are_very_low_not_nan() {
        assert!(dbm0_of(&[]) < -100.0);
        assert!(dbm0_of(&[0; 160]) < -100.0);
    }
}
