//! Talk-off: speech (espeak-ng, 12 voices, > 10 minutes, plus three-voice babble) and
//! generated music through G.711
//! μ-law must not make `media::inband` report digits; spandsp's `dtmf_rx` runs on the same
//! audio and ours must not do worse. Generated audio is cached under
//! `target/inband/talkoff-cache/`, keyed by an FNV-1a hash of everything that produced it.
//! (`cargo test --test inband_talkoff -- --nocapture` prints the table.)

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// (espeak-ng voice, words/min, pitch 0-99, vocabulary)
const VOICES: &[(&str, u32, u32, &[&str])] = &[
    ("en", 175, 50, EN),
    ("en+f3", 160, 80, EN),
    ("en-us+m3", 190, 40, EN),
    ("en+f5", 150, 95, EN),
    ("de", 170, 60, DE),
    ("fr", 170, 70, FR),
    ("es", 180, 55, ES),
    ("it", 170, 75, IT),
    ("pt", 165, 50, PT),
    ("nl", 175, 65, NL),
    ("ja", 160, 85, JA),
    ("hi", 170, 60, HI),
    // Slow and high-pitched: long steady vowels, the hardest espeak material for talk-off.
    ("en+f4", 80, 99, EN),
    ("it+f2", 90, 99, IT),
    ("ja", 80, 99, JA),
    // Held out: added after the guard band (check 8) was chosen, not used to tune it.
    ("fr+f3", 80, 99, FR),
    ("de+f4", 80, 99, DE),
    ("es+f1", 80, 99, ES),
    ("en-us+f2", 70, 99, EN),
    ("pt+f5", 80, 99, PT),
    ("nl+m1", 80, 10, NL),
];

const EN: &[&str] = &[
    "the",
    "remote",
    "maintenance",
    "server",
    "calls",
    "back",
    "after",
    "seven",
    "minutes",
    "please",
    "enter",
    "your",
    "password",
    "followed",
    "by",
    "the",
    "hash",
    "key",
    "station",
    "morning",
    "train",
    "weather",
    "tomorrow",
    "number",
    "people",
    "arrived",
    "evening",
    "telephone",
    "operator",
    "switch",
    "console",
    "modem",
    "line",
    "busy",
    "ringing",
    "quiet",
    "music",
    "window",
    "yellow",
    "house",
    "river",
    "mountain",
    "beautiful",
    "quickly",
    "said",
    "because",
    "twelve",
    "thousand",
    "hundred",
    "nine",
    "oh",
    "yes",
    "no",
    "hello",
    "goodbye",
];
const DE: &[&str] = &[
    "der", "Server", "ruft", "zurück", "bitte", "geben", "Sie", "Ihr", "Kennwort", "ein",
    "Wartung", "Morgen", "Zug", "Bahnhof", "Wetter", "heute", "Abend", "Telefon", "Leitung",
    "besetzt", "schön", "schnell", "Fenster", "Haus", "Fluss", "Berg", "danke", "neun", "zwölf",
];
const FR: &[&str] = &[
    "le",
    "serveur",
    "rappelle",
    "après",
    "sept",
    "minutes",
    "veuillez",
    "entrer",
    "votre",
    "mot",
    "de",
    "passe",
    "gare",
    "matin",
    "train",
    "temps",
    "demain",
    "soir",
    "téléphone",
    "ligne",
    "occupée",
    "musique",
    "fenêtre",
    "maison",
    "rivière",
    "montagne",
    "merci",
    "neuf",
];
const ES: &[&str] = &[
    "el",
    "servidor",
    "llama",
    "después",
    "de",
    "siete",
    "minutos",
    "por",
    "favor",
    "introduzca",
    "su",
    "contraseña",
    "estación",
    "mañana",
    "tren",
    "tiempo",
    "noche",
    "teléfono",
    "línea",
    "ocupada",
    "música",
    "ventana",
    "casa",
    "río",
    "montaña",
    "gracias",
    "nueve",
    "doce",
];
const IT: &[&str] = &[
    "il", "server", "richiama", "dopo", "sette", "minuti", "per", "favore", "inserire", "la",
    "password", "stazione", "mattina", "treno", "tempo", "domani", "sera", "telefono", "linea",
    "occupata", "musica", "finestra", "casa", "fiume", "montagna", "grazie", "nove", "dodici",
];
const PT: &[&str] = &[
    "o",
    "servidor",
    "liga",
    "depois",
    "de",
    "sete",
    "minutos",
    "por",
    "favor",
    "introduza",
    "a",
    "senha",
    "estação",
    "manhã",
    "comboio",
    "tempo",
    "amanhã",
    "noite",
    "telefone",
    "linha",
    "ocupada",
    "música",
    "janela",
    "casa",
    "rio",
    "montanha",
    "obrigado",
    "nove",
    "doze",
];
const NL: &[&str] = &[
    "de",
    "server",
    "belt",
    "terug",
    "na",
    "zeven",
    "minuten",
    "voer",
    "uw",
    "wachtwoord",
    "in",
    "station",
    "ochtend",
    "trein",
    "weer",
    "morgen",
    "avond",
    "telefoon",
    "lijn",
    "bezet",
    "muziek",
    "raam",
    "huis",
    "rivier",
    "berg",
    "dank",
    "negen",
    "twaalf",
];
const JA: &[&str] = &[
    "サーバー",
    "が",
    "七分",
    "後",
    "に",
    "折り返し",
    "電話",
    "します",
    "パスワード",
    "を",
    "入力",
    "して",
    "ください",
    "駅",
    "朝",
    "電車",
    "天気",
    "明日",
    "夜",
    "回線",
    "音楽",
    "窓",
    "家",
    "川",
    "山",
    "ありがとう",
    "九",
    "十二",
];
const HI: &[&str] = &[
    "सर्वर",
    "सात",
    "मिनट",
    "बाद",
    "वापस",
    "कॉल",
    "करेगा",
    "कृपया",
    "अपना",
    "पासवर्ड",
    "डालें",
    "स्टेशन",
    "सुबह",
    "ट्रेन",
    "मौसम",
    "कल",
    "शाम",
    "टेलीफोन",
    "लाइन",
    "संगीत",
    "खिड़की",
    "घर",
    "नदी",
    "पहाड़",
    "धन्यवाद",
    "नौ",
    "बारह",
];

/// Words per voice: about 60 s of speech at the rates above.
const WORDS_PER_VOICE: usize = 170;
const PIPELINE: &str =
    "espeak-ng -v V -s S -p P -w; sox -t raw -r 8000 -c 1 -b 16 -e signed norm -3; v1";

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Procedural text: words, numbers, dates and phone numbers (espeak reads digits in the
/// voice's language).
fn text_for(voice_index: usize, vocab: &[&str]) -> String {
    let mut rng = Rng::new(0x7a1c + voice_index as u64);
    let mut out = String::new();
    for i in 0..WORDS_PER_VOICE {
        let r = rng.next_u64();
        match r % 10 {
            0 => out += &format!("{}", r % 10_000),
            1 => out += &format!("{}.{}", r % 100, (r >> 8) % 10),
            2 => {
                for k in 0..5 {
                    out += &format!("{} ", (r >> (8 * k)) % 10);
                }
            }
            _ => out += vocab[(r >> 16) as usize % vocab.len()],
        }
        out += if i % 11 == 10 { ". " } else { " " };
    }
    out
}

fn cache_dir() -> PathBuf {
    let dir = out_dir().join("talkoff-cache");
    std::fs::create_dir_all(&dir).expect("create cache dir");
    dir
}

/// Linear 8 kHz speech for one voice, generated once and cached.
fn speech(voice_index: usize) -> Option<Vec<i16>> {
    let (voice, speed, pitch, vocab) = VOICES[voice_index];
    let text = text_for(voice_index, vocab);
    let key = fnv1a(&[
        voice.as_bytes(),
        &speed.to_le_bytes(),
        &pitch.to_le_bytes(),
        text.as_bytes(),
        PIPELINE.as_bytes(),
    ]);
    let raw = cache_dir().join(format!("{key:016x}.raw"));
    if !raw.exists() {
        let wav = cache_dir().join(format!("{key:016x}.wav"));
        let ok = Command::new("espeak-ng")
            .args([
                "-v",
                voice,
                "-s",
                &speed.to_string(),
                "-p",
                &pitch.to_string(),
                "-w",
            ])
            .arg(&wav)
            .arg(&text)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!(
                "SKIP voice {voice}: espeak-ng failed or missing (apt-get install espeak-ng)"
            );
            return None;
        }
        let tmp = raw.with_extension("part");
        let ok = Command::new("sox")
            .arg(&wav)
            .args([
                "-t",
                "raw",
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
            ])
            .arg(&tmp)
            .args(["norm", "-3"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let _ = std::fs::remove_file(&wav);
        if !ok {
            eprintln!("SKIP voice {voice}: sox failed or missing (apt-get install sox)");
            return None;
        }
        std::fs::rename(&tmp, &raw).expect("publish cached audio");
    }
    let bytes = std::fs::read(&raw).expect("read cached audio");
    Some(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    )
}

/// Music-like material: chords and arpeggios of harmonic-rich notes (six harmonics, 1/k
/// amplitudes, plucked decay) on the equal-tempered scale C4..C7, 3 minutes.
fn music(seed: u64) -> Vec<i16> {
    let mut rng = Rng::new(seed);
    let total = 8000 * 180;
    let mut acc = vec![0f64; total];
    let mut t = 0usize;
    let tau = 2.0 * std::f64::consts::PI;
    while t < total {
        let dur = 800 + (rng.next_u64() % 2400) as usize;
        let root = 48 + (rng.next_u64() % 24) as i32; // MIDI 60..83 after +12
        let chord: &[i32] = match rng.next_u64() % 4 {
            0 => &[0, 4, 7],
            1 => &[0, 3, 7, 12],
            2 => &[0, 4, 7, 11],
            _ => &[0, 5, 9],
        };
        let arpeggio = rng.next_u64().is_multiple_of(2);
        for (k, iv) in chord.iter().enumerate() {
            let midi = root + 12 + iv;
            let hz = 440.0 * 2f64.powf(f64::from(midi - 69) / 12.0);
            let onset = if arpeggio {
                t + k * dur / chord.len()
            } else {
                t
            };
            let amp = 2500.0;
            for n in 0..dur * 2 {
                let i = onset + n;
                if i >= total {
                    break;
                }
                let env = (-(n as f64) / (dur as f64 * 0.6)).exp();
                let ph = tau * hz * n as f64 / 8000.0;
                let mut v = 0.0;
                for h in 1..=6 {
                    if hz * f64::from(h) < 3800.0 {
                        v += (ph * f64::from(h)).sin() / f64::from(h);
                    }
                }
                acc[i] += amp * env * v;
            }
        }
        t += dur;
    }
    acc.iter()
        .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Two simultaneous flute-like notes from F5, G5, A#5 (low) and E6, F#6, G#6 (high),
/// 100–400 ms each with 100 ms rests, 60 s.
fn duets(seed: u64) -> Vec<i16> {
    let low = [77, 79, 82];
    let high = [88, 90, 92];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(8000 * 60);
    let tau = 2.0 * std::f64::consts::PI;
    while out.len() < 8000 * 60 {
        let dur = 800 + (rng.next_u64() % 2400) as usize;
        let notes = [
            low[(rng.next_u64() % 3) as usize],
            high[(rng.next_u64() % 3) as usize],
        ];
        let (mut p0, mut p1) = (0.0f64, 0.0f64);
        for n in 0..dur {
            let vib = 1.0 + 0.005 * (tau * 5.0 * n as f64 / 8000.0).sin();
            let f0 = 440.0 * 2f64.powf(f64::from(notes[0] - 69) / 12.0) * vib;
            let f1 = 440.0 * 2f64.powf(f64::from(notes[1] - 69) / 12.0) * vib;
            p0 += tau * f0 / 8000.0;
            p1 += tau * f1 / 8000.0;
            let v = p0.sin() + 0.1 * (2.0 * p0).sin() + p1.sin() + 0.1 * (2.0 * p1).sin();
            out.push((5000.0 * v).round() as i16);
        }
        out.extend(std::iter::repeat_n(0, 800));
    }
    out
}

fn write_raw(name: &str, pcm: &[i16]) -> PathBuf {
    let path = out_dir().join(name);
    let mut bytes = Vec::with_capacity(pcm.len() * 2);
    for s in pcm {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(&path, bytes).expect("write raw audio");
    path
}

#[test]
fn speech_and_music_do_not_talk_off_more_than_spandsp() {
    let started = std::time::Instant::now();
    let mut text = String::from("Talk-off through G.711 μ-law (false digits)\n");
    text += &format!(
        "{:<22} {:>9} {:>6} {:>8}   ours at (s)\n",
        "material", "seconds", "ours", "spandsp"
    );
    let mut all_speech = Vec::new();
    let (mut ours_total, mut span_total) = (0usize, 0usize);
    let mut span_available = true;
    let row = |label: &str, line: &[i16], text: &mut String| -> (usize, Option<usize>) {
        let ours = detect(line);
        let span = spandsp_digits(line).map(|s| s.len());
        let at: Vec<String> = ours
            .iter()
            .take(10)
            .map(|e| format!("{}@{:.1}", e.digit, e.start_sample as f64 / 8000.0))
            .collect();
        *text += &format!(
            "{:<22} {:>9.1} {:>6} {:>8}   {}\n",
            label,
            line.len() as f64 / 8000.0,
            ours.len(),
            span.map(|n| n.to_string()).unwrap_or_else(|| "n/a".into()),
            at.join(" ")
        );
        (ours.len(), span)
    };
    for (i, voice) in VOICES.iter().enumerate() {
        let Some(pcm) = speech(i) else { continue };
        let line = Law::Ulaw.channel(&pcm);
        let (o, s) = row(
            &format!("speech {} {}wpm", voice.0, voice.1),
            &line,
            &mut text,
        );
        ours_total += o;
        match s {
            Some(s) => span_total += s,
            None => span_available = false,
        }
        all_speech.extend_from_slice(&line);
    }
    let speech_secs = all_speech.len() as f64 / 8000.0;
    text += &format!(
        "{:<22} {:>9.1} {:>6} {:>8}\n",
        "speech total",
        speech_secs,
        ours_total,
        if span_available {
            span_total.to_string()
        } else {
            "n/a".into()
        }
    );
    // Kept for scripts/bench-inband-vs-spandsp.sh.
    write_raw("talkoff-speech-ulaw.raw", &all_speech);

    // Babble: three voices at once (speech over speech), 0 dB each.
    let voices: Vec<Vec<i16>> = [1, 5, 10].iter().filter_map(|&i| speech(i)).collect();
    if voices.len() == 3 {
        let len = voices.iter().map(Vec::len).min().unwrap_or(0);
        let babble: Vec<i16> = (0..len)
            .map(|n| {
                let v: i32 = voices.iter().map(|p| i32::from(p[n]) / 2).sum();
                v.clamp(-32768, 32767) as i16
            })
            .collect();
        let line = Law::Ulaw.channel(&babble);
        let (o, s) = row("babble en+f3/fr/ja", &line, &mut text);
        ours_total += o;
        match s {
            Some(s) => span_total += s,
            None => span_available = false,
        }
    }

    let mut music_ours = 0;
    let mut music_span = Some(0);
    for seed in [1u64, 2] {
        let line = Law::Ulaw.channel(&music(seed));
        let (o, s) = row(&format!("music seed {seed}"), &line, &mut text);
        music_ours += o;
        music_span = music_span.zip(s).map(|(a, b)| a + b);
    }
    // Reported, not asserted: duets of nearly pure notes (2nd harmonic −20 dB, 5 Hz vibrato)
    // on the scale notes nearest the DTMF frequencies. F5 + F#6 (698.5 + 1480 Hz) *is* a
    // Q.24-valid '3' (+0.2 %, +0.2 %), so a compliant receiver must report some of these.
    let line = Law::Ulaw.channel(&duets(7));
    row("duets near DTMF (info)", &line, &mut text);
    text += &format!("elapsed {:.1} s\n", started.elapsed().as_secs_f64());
    report("talkoff", &text);

    assert!(
        all_speech.len() >= 8000 * 600 || !span_available,
        "less than 10 minutes of speech generated: {speech_secs:.0} s"
    );
    if span_available {
        assert!(
            ours_total <= span_total,
            "speech: ours {ours_total} > spandsp {span_total}"
        );
    }
    if let Some(s) = music_span {
        assert!(music_ours <= s, "music: ours {music_ours} > spandsp {s}");
    }
}
