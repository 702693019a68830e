//! The layering of `src/` holds: a module uses only its own files and modules of lower
//! layers (README, Architecture). A small source scan: every `crate::NAME` outside comments
//! must name the file's own top-level module or one of a lower layer.

mod common;

use std::path::Path;

/// Top-level modules of the library by layer, bottom to top (as in `src/lib.rs`).
const LAYERS: &[(&str, usize)] = &[
    ("error", 0),
    ("base", 1),
    ("clip", 2),
    ("dict", 2),
    ("analysis", 2),
    ("io", 3),
    ("pipeline", 4),
    ("inspect", 4),
    ("train", 5),
    ("jobs", 6),
    ("world", 6),
    ("apps", 6),
    ("lab", 7),
    ("bench", 7),
    ("web", 8),
];

/// Items `src/lib.rs` re-exports at the crate root, and the module they come from.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Result", "error"),
    ("read_file", "base"),
    ("write_atomic", "base"),
    ("write_dir_atomic", "base"),
    ("checkpoint_dir", "base"),
    ("Embedder", "pipeline"),
    ("ModelFiles", "pipeline"),
    ("ModelInfo", "pipeline"),
    ("Lab", "lab"),
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The module a `crate::NAME` reference reaches.
fn target(name: &str) -> Option<&str> {
    if layer(name).is_some() {
        return LAYERS.iter().find(|(m, _)| *m == name).map(|(m, _)| *m);
    }
    ROOT_ITEMS.iter().find(|(i, _)| *i == name).map(|(_, m)| *m)
}

/// The violations in one file's text (`module`: its top-level module).
fn violations(module: &str, text: &str) -> Vec<String> {
    let own = layer(module).unwrap_or_else(|| panic!("module {module} has no layer"));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            match target(&name) {
                None => out.push(format!("line {}: crate::{name} is in no layer", n + 1)),
                Some(t) if t != module && layer(t).unwrap() >= own => out.push(format!(
                    "line {}: {module} (layer {own}) uses crate::{name} (layer {})",
                    n + 1,
                    layer(t).unwrap()
                )),
                _ => {}
            }
        }
    }
    out
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
fn no_module_imports_from_a_layer_above_it() {
    let src = common::root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut all = Vec::new();
    let mut scanned = 0;
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        // lib.rs is the top (it declares and re-exports); the binary is its own crate.
        if rel == Path::new("lib.rs") || first == "bin" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        scanned += 1;
        for v in violations(&module, &text) {
            all.push(format!("src/{}: {v}", rel.display()));
        }
    }
    assert!(scanned > 30, "only {scanned} files scanned");
    assert!(all.is_empty(), "layer violations:\n{}", all.join("\n"));
}

#[test]
fn the_scan_catches_upward_and_sideways_imports() {
    assert_eq!(
        violations("dict", "use crate::clip::l2_normalize;").len(),
        1
    );
    assert_eq!(violations("io", "use crate::inspect::Lens;").len(), 1);
    assert_eq!(
        violations("base", "let x = crate::Embedder::new();").len(),
        1
    );
    assert_eq!(violations("clip", "use crate::nowhere::X;").len(), 1);
    assert!(violations("lab", "use crate::apps::probe; use crate::base::Pairs;").is_empty());
    assert!(violations("dict", "// see crate::clip::l2_normalize").is_empty());
    assert!(violations("dict", "use crate::dict::sae::Sae;").is_empty());
}
