//! No circle between files, in any crate of the workspace: no source file
//! uses, directly or through others, a file that uses it.
//!
//! What counts as "file A uses file B" (an edge A → B):
//! - a path in A that names an item of B's module: `crate::…`, `super::…`,
//!   `self::…`, or a path starting with a child module's name, whether in a
//!   `use` item (groups `{a, b::c}`, `pub use`, `self` in a group included)
//!   or in an expression or type (`crate::report::render(…)`); the path is
//!   resolved to the longest prefix that names a module, and that module's
//!   file is B;
//! - inline modules (`mod tests { … }`) belong to their file: `super::` from
//!   inside one resolves from the inline module, and a path into one lands
//!   on the file that holds it.
//!
//! What does not count: `mod child;` itself (containment: a parent declares
//! its children, it does not use them), paths into other crates, `$crate`
//! in macros, and a file using itself. Test modules count like any other
//! code: a circle through a test is still a circle to read through.
//!
//! The check reads the sources as text (comments and string literals
//! skipped); it needs no compiler and runs on every `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn no_file_uses_a_file_that_uses_it() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crates/").to_path_buf();
    let mut circles = Vec::new();
    let mut crate_dirs: Vec<PathBuf> =
        fs::read_dir(&crates_dir).expect("crates/ is readable").map(|e| e.expect("dir entry").path()).collect();
    crate_dirs.sort();
    for dir in crate_dirs {
        for root in ["src/lib.rs", "src/main.rs"] {
            let root = dir.join(root);
            if root.is_file() {
                let graph = UseGraph::of_crate(&root);
                for circle in graph.circles() {
                    let names: Vec<String> =
                        circle.iter().map(|f| f.strip_prefix(&crates_dir).unwrap_or(f).display().to_string()).collect();
                    circles.push(format!("  {}", names.join(" ↔ ")));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files that use each other (directly or through others); move what both need into a file of its own:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_parser_sees_groups_reexports_super_self_and_expressions() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let dir = scratch.path().to_path_buf();
    let w = |p: &str, s: &str| {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, s).unwrap();
    };
    w("lib.rs", "mod a; mod b; mod c; pub mod d;\n// use crate::b; (a comment)\nconst S: &str = \"crate::c::x\";");
    w("a.rs", "use crate::{b::Thing, c};\n");
    w("b.rs", "pub struct Thing;\nfn f() { let _ = crate::c::g(); }\nmod tests { use super::*; }");
    w("c.rs", "pub fn g() {}\n");
    // A parent re-exporting its child is containment; siblings using each
    // other are a circle.
    w("d/mod.rs", "mod e; mod f;\npub use e::E;\npub struct X;\n");
    w(
        "d/e.rs",
        "pub struct E;\nfn h() { self::inner::k(); super::f::z(); }\nmod inner { pub fn k() { super::super::X; } }",
    );
    w("d/f.rs", "use super::{e::E as Renamed, X};\npub fn z() {}\n");
    let graph = UseGraph::of_crate(&dir.join("lib.rs"));
    let edges: BTreeSet<(String, String)> = graph
        .edges
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from.clone(), to.clone())))
        .map(|(f, t)| (rel(&dir, &f), rel(&dir, &t)))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("a.rs", "b.rs"),
        ("a.rs", "c.rs"),
        ("b.rs", "c.rs"),
        ("d/e.rs", "d/mod.rs"),
        ("d/e.rs", "d/f.rs"),
        ("d/f.rs", "d/e.rs"),
        ("d/f.rs", "d/mod.rs"),
    ]
    .iter()
    .map(|(f, t)| (f.to_string(), t.to_string()))
    .collect();
    assert_eq!(edges, expected);
    let circles: Vec<Vec<String>> = graph.circles().iter().map(|c| c.iter().map(|f| rel(&dir, f)).collect()).collect();
    assert_eq!(circles, vec![vec!["d/e.rs".to_string(), "d/f.rs".to_string()]]);
}

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap().display().to_string()
}

/// A module: the file it lives in, and its path from the crate root.
#[derive(Clone, Debug)]
struct Module {
    file: PathBuf,
}

struct UseGraph {
    /// Module path (`["report", "model"]`) → where it lives.
    modules: BTreeMap<Vec<String>, Module>,
    edges: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

impl UseGraph {
    fn of_crate(root: &Path) -> UseGraph {
        let mut graph = UseGraph { modules: BTreeMap::new(), edges: BTreeMap::new() };
        // Pass 1: the module tree (every file, every inline module).
        let mut files = Vec::new();
        graph.collect_modules(root, Vec::new(), &mut files);
        // Pass 2: every path in every file.
        for (file, module) in files {
            let tokens = tokenize(&fs::read_to_string(&file).expect("source is readable"));
            graph.scan_paths(&file, &module, &tokens);
        }
        graph
    }

    /// Reads `file` (the module at `path`), registers it and its inline
    /// modules, and recurses into `mod child;` declarations.
    fn collect_modules(&mut self, file: &Path, path: Vec<String>, files: &mut Vec<(PathBuf, Vec<String>)>) {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let tokens = tokenize(&text);
        let dir = module_dir(file);
        self.modules.insert(path.clone(), Module { file: file.to_path_buf() });
        files.push((file.to_path_buf(), path.clone()));
        let mut enclosing = Enclosing::default();
        let mut i = 0;
        while i < tokens.len() {
            let module = enclosing.path(&path);
            if let Some(name) = enclosing.follow(&tokens, i) {
                let mut child = module;
                child.push(name);
                self.modules.insert(child, Module { file: file.to_path_buf() });
                i += 3;
                continue;
            }
            let declares_file =
                tokens[i] == "mod" && i + 2 < tokens.len() && is_ident(&tokens[i + 1]) && tokens[i + 2] == ";";
            if declares_file && enclosing.stack.is_empty() {
                let name = &tokens[i + 1];
                let candidates = [dir.join(format!("{name}.rs")), dir.join(name).join("mod.rs")];
                let found = candidates.iter().find(|c| c.is_file()).unwrap_or_else(|| {
                    panic!("{}: `mod {name};` has no file (looked for {candidates:?})", file.display())
                });
                let mut child = module;
                child.push(name.clone());
                self.collect_modules(found, child, files);
            }
            i += 1;
        }
    }

    /// Adds an edge for every module path in `file` (module `base`).
    fn scan_paths(&mut self, file: &Path, base: &[String], tokens: &[String]) {
        let mut enclosing = Enclosing::default();
        let mut i = 0;
        while i < tokens.len() {
            if enclosing.follow(tokens, i).is_some() {
                i += 3;
                continue;
            }
            let current = enclosing.path(base);
            match tokens[i].as_str() {
                "mod" => {
                    // `mod child;` is containment, not use: skip the name.
                    i += 2;
                    continue;
                }
                "use" => {
                    let end = tokens[i..].iter().position(|t| t == ";").map_or(tokens.len(), |p| i + p);
                    for path in expand_use_tree(&tokens[i + 1..end]) {
                        self.add_edge(file, &current, &path);
                    }
                    i = end + 1;
                    continue;
                }
                t if is_ident(t) && i + 1 < tokens.len() && tokens[i + 1] == "::" => {
                    // An expression or type path: `a::b::c`, unless it
                    // continues a longer path (`x.a::b` cannot occur; `$crate`
                    // is tokenized as one token and never matches).
                    let preceded_by_path = i > 0 && tokens[i - 1] == "::";
                    let mut path = vec![t.to_string()];
                    let mut j = i + 1;
                    while j + 1 < tokens.len() && tokens[j] == "::" && is_ident(&tokens[j + 1]) {
                        path.push(tokens[j + 1].clone());
                        j += 2;
                    }
                    if !preceded_by_path {
                        self.add_edge(file, &current, &path);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn add_edge(&mut self, file: &Path, current: &[String], path: &[String]) {
        let Some(target) = self.resolve(current, path) else { return };
        if target.len() > current.len() && target.starts_with(current) {
            // A module using its own descendant: containment (see the top).
            return;
        }
        let to = &self.modules[&target].file;
        if to != file {
            self.edges.entry(file.to_path_buf()).or_default().insert(to.clone());
        }
    }

    /// The longest module prefix of `path` as seen from module `current`;
    /// `None` for paths that leave the crate.
    fn resolve(&self, current: &[String], path: &[String]) -> Option<Vec<String>> {
        let mut module: Vec<String>;
        let mut rest = path;
        match path.first()?.as_str() {
            "crate" => {
                module = Vec::new();
                rest = &path[1..];
            }
            "self" => {
                module = current.to_vec();
                rest = &path[1..];
            }
            "super" => {
                module = current.to_vec();
                while rest.first().is_some_and(|s| s == "super") {
                    module.pop()?;
                    rest = &rest[1..];
                }
            }
            first => {
                // A child module of the current one, or nothing of this crate.
                let mut child = current.to_vec();
                child.push(first.to_string());
                if !self.modules.contains_key(&child) {
                    return None;
                }
                module = current.to_vec();
            }
        }
        for seg in rest {
            let mut next = module.clone();
            next.push(seg.clone());
            if self.modules.contains_key(&next) {
                module = next;
            } else {
                break;
            }
        }
        Some(module)
    }

    /// Every group of two or more files that reach each other (Tarjan's
    /// strongly connected components), each sorted, in file order.
    fn circles(&self) -> Vec<Vec<PathBuf>> {
        let nodes: Vec<&PathBuf> = {
            let mut set: BTreeSet<&PathBuf> = self.edges.keys().collect();
            set.extend(self.edges.values().flatten());
            set.into_iter().collect()
        };
        let index_of: BTreeMap<&PathBuf, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let succ: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| self.edges.get(*n).map_or(Vec::new(), |s| s.iter().map(|t| index_of[t]).collect()))
            .collect();
        let mut tarjan = Tarjan::new(nodes.len());
        for v in 0..nodes.len() {
            if tarjan.index[v].is_none() {
                tarjan.visit(v, &succ);
            }
        }
        let mut out: Vec<Vec<PathBuf>> = tarjan
            .components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut files: Vec<PathBuf> = c.into_iter().map(|i| nodes[i].clone()).collect();
                files.sort();
                files
            })
            .collect();
        out.sort();
        out
    }
}

struct Tarjan {
    next: usize,
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    components: Vec<Vec<usize>>,
}

impl Tarjan {
    fn new(n: usize) -> Tarjan {
        Tarjan {
            next: 0,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            components: Vec::new(),
        }
    }

    fn visit(&mut self, v: usize, succ: &[Vec<usize>]) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &succ[v] {
            match self.index[w] {
                None => {
                    self.visit(w, succ);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// The inline modules (`mod name { … }`) around a token, followed brace by
/// brace.
#[derive(Default)]
struct Enclosing {
    /// Each open inline module and the brace depth it opened at.
    stack: Vec<(String, usize)>,
    depth: usize,
}

impl Enclosing {
    /// Follows the token at `i`; at `mod name {` (three tokens, taken
    /// whole) returns the name.
    fn follow(&mut self, tokens: &[String], i: usize) -> Option<String> {
        match tokens[i].as_str() {
            "{" => self.depth += 1,
            "}" => {
                self.depth = self.depth.saturating_sub(1);
                if self.stack.last().is_some_and(|(_, d)| *d == self.depth) {
                    self.stack.pop();
                }
            }
            "mod" if i + 2 < tokens.len() && is_ident(&tokens[i + 1]) && tokens[i + 2] == "{" => {
                self.stack.push((tokens[i + 1].clone(), self.depth));
                self.depth += 1;
                return Some(tokens[i + 1].clone());
            }
            _ => {}
        }
        None
    }

    /// The module path here, inside the file's module `base`.
    fn path(&self, base: &[String]) -> Vec<String> {
        base.iter().cloned().chain(self.stack.iter().map(|(n, _)| n.clone())).collect()
    }
}

/// The directory a module's `mod child;` files live in.
fn module_dir(file: &Path) -> PathBuf {
    let dir = file.parent().expect("a file has a directory").to_path_buf();
    match file.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "main.rs" | "mod.rs") => dir,
        _ => dir.join(file.file_stem().expect("a .rs file has a stem")),
    }
}

/// The paths a `use` tree names: `crate::{a, b::{c, self}}` →
/// `crate::a`, `crate::b::c`, `crate::b`. `as` renames and globs end a path.
fn expand_use_tree(tokens: &[String]) -> Vec<Vec<String>> {
    fn walk(tokens: &[String], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
        let mut path = prefix.to_vec();
        while i < tokens.len() {
            match tokens[i].as_str() {
                "::" => {}
                "{" => {
                    i += 1;
                    loop {
                        i = walk(tokens, i, &path, out);
                        match tokens.get(i).map(String::as_str) {
                            Some(",") => i += 1,
                            Some("}") => return i + 1,
                            _ => return i,
                        }
                        if tokens.get(i).map(String::as_str) == Some("}") {
                            return i + 1;
                        }
                    }
                }
                "," | "}" => break,
                "as" => i += 1, // skip the new name
                "*" => {}
                "self" if !path.is_empty() => {}
                t => path.push(t.to_string()),
            }
            i += 1;
        }
        if !path.is_empty() {
            out.push(path);
        }
        i
    }
    let mut out = Vec::new();
    let mut i = 0;
    // `pub use`, `pub(crate) use`: the tokens before `use` are not ours.
    while i < tokens.len() {
        i = walk(tokens, i, &[], &mut out);
        i += 1;
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers, `::` and single punctuation characters; comments, string
/// and character literals dropped; `$crate` kept as one token.
fn tokenize(src: &str) -> Vec<String> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
            let (hashes, body) = raw_string_start(&chars, i).expect("checked");
            let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            i = body;
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                i += 1;
            }
            i += closing.len();
        } else if c == 'b' && next == Some('"') {
            i = skip_string(&chars, i + 2);
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphanumeric() || c == '_' || (c == '$' && next.is_some_and(|n| n.is_alphabetic())) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && next == Some(':') {
            tokens.push("::".into());
            i += 2;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// At `r"`, `r#"`, `br"`, `br#"`: the number of `#` and where the body starts.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}
