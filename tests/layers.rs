//! The module graph has layers and no cycles: `src/lib.rs` draws the layer
//! table, and every `crate::` path in a module's code (comments aside) must
//! name a module on a lower line. A lower module importing a higher one —
//! the start of a cycle — fails here, naming the file and line.

use std::collections::BTreeMap;
use std::path::Path;

fn layers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let mut table = BTreeMap::new();
    let mut inside = false;
    for line in lib.lines() {
        let l = line.trim_start_matches("//!").trim();
        if l == "```text" {
            inside = true;
            continue;
        }
        if inside && l == "```" {
            break;
        }
        if inside {
            let mut words = l.split_whitespace();
            let rank: usize = words.next().and_then(|w| w.parse().ok()).expect("a layer line starts with its rank");
            for m in words {
                assert!(table.insert(m.to_owned(), rank).is_none(), "{m} is on two layers");
            }
        }
    }
    table
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn a_lower_module_never_uses_a_higher_one() {
    let layers = layers();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let declared: Vec<String> = std::fs::read_to_string(src.join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ").and_then(|l| l.strip_suffix(';')).map(str::to_owned))
        .collect();
    for m in &declared {
        assert!(layers.contains_key(m), "module {m} is not in the layer table of src/lib.rs");
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_owned();
        let Some(&mine) = layers.get(&top) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (i, _) in code.match_indices("crate::") {
                let used: String =
                    code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let Some(&theirs) = layers.get(&used) else { continue };
                checked += 1;
                if used != top && theirs >= mine {
                    wrong.push(format!(
                        "{}:{}: {top} (layer {mine}) uses {used} (layer {theirs})",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(checked > 100, "the scan found the crate's own paths ({checked})");
    assert!(wrong.is_empty(), "a lower module uses a higher one:\n{}", wrong.join("\n"));
}
