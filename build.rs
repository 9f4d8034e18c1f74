//! Links the offline speech libraries used by `src/backends`:
//! flite (Debian `flite1-dev`) for text-to-speech and PocketSphinx with SphinxBase
//! (Debian `libpocketsphinx-dev`, `libsphinxbase-dev`) for speech-to-text.
//!
//! Both live in the default multiarch library directory on Debian, so no search path is needed.
//! `RECEPTIONIST_SPEECH_LIB_DIR` may name an extra directory for other layouts.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RECEPTIONIST_SPEECH_LIB_DIR");
    if let Ok(dir) = std::env::var("RECEPTIONIST_SPEECH_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
    }

    // flite: voices first, then the language and lexicon they use, then the core.
    for lib in [
        "flite_cmu_us_slt",
        "flite_cmu_us_kal16",
        "flite_cmu_us_kal",
        "flite_cmu_us_rms",
        "flite_cmu_us_awb",
        "flite_usenglish",
        "flite_cmulex",
        "flite",
    ] {
        println!("cargo:rustc-link-lib={lib}");
    }

    // PocketSphinx 5prealpha (Debian 0.8+5prealpha) and the SphinxBase it is built on.
    println!("cargo:rustc-link-lib=pocketsphinx");
    println!("cargo:rustc-link-lib=sphinxbase");

    println!("cargo:rustc-link-lib=m");
}
