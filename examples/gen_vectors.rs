//! Writes the golden vectors under `tests/vectors/` (see docs/protocol.md section 4).
//!
//! `cargo run --example gen_vectors` re-derives every payload file from the checked-in images;
//! `--images` also re-renders the images (only when the sample scene itself changes).

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let images = root.join("images");
    std::fs::create_dir_all(&images)?;
    let rerender = std::env::args().any(|a| a == "--images");
    for &(name, w, h, frame, q) in receiver_testkit::golden::IMAGES {
        let path = images.join(name);
        if rerender || !path.exists() {
            std::fs::write(
                &path,
                receiver_testkit::sample::scene_jpeg(w, h, frame, "GOLDEN", q)?,
            )?;
        }
    }
    let files = receiver_testkit::golden::render(&|name| std::fs::read(images.join(name)).ok())?;
    for (rel, body) in files {
        let path = root.join(&rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, body)?;
        println!("wrote tests/vectors/{rel}");
    }
    Ok(())
}
