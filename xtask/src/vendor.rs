//! `cargo xtask vendor-ec2 [--check]`: the EC2 client, trimmed to the
//! operations wasmonkey calls.
//!
//! `aws-sdk-ec2` holds all of EC2's 800-odd operations in 88 MB of
//! generated source, and compiling it takes over 7 GB of memory whatever
//! the profile (docs/benchmarks.md). The host calls two operations and its
//! tests two more. The community's way out (aws-sdk-rust#113) is to
//! regenerate the SDK from a trimmed model with smithy-rs; that needs
//! Maven Central, which this project's machines cannot reach. So this
//! command derives the same trimmed crate from the published one: it keeps
//! the operations named in [`OPERATIONS`], every shape, serializer and
//! helper they reach, and all of the crate's own machinery (config,
//! endpoints, retries, signing), and drops the rest. What it keeps is the
//! published text, byte for byte; what it drops is whole files and whole
//! items. `--check` runs the same derivation again and fails when the
//! committed copy differs, so the copy is never edited by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use proc_macro2::{LineColumn, TokenStream};
use quote::ToTokens;

/// The published version the trimmed crate is derived from. The host's
/// `Cargo.lock` resolves `aws-sdk-ec2` to the trimmed copy, which keeps
/// this version number.
pub(crate) const VERSION: &str = "1.274.0";

/// The operations kept: what `host/src/cloud/aws.rs` calls, and what the
/// moto tests use to build their fleet.
pub(crate) const OPERATIONS: &[&str] = &[
    "describe_instances",
    "terminate_instances",
    "run_instances",
    "create_launch_template",
    "stop_instances",
    "start_instances",
    "reboot_instances",
    "describe_network_acls",
    "create_network_acl",
    "replace_network_acl_association",
    "delete_network_acl",
];

/// Where the trimmed crate lives, relative to the repository.
pub(crate) const DIR: &str = "vendor/aws-sdk-ec2";

/// Write the trimmed crate into [`DIR`], replacing what is there.
pub(crate) fn update(root: &Path) -> Result<()> {
    let published = published_source(root)?;
    let out = root.join(DIR);
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    let summary = derive(&published, &out)?;
    eprintln!("{summary}");
    Ok(())
}

/// Fail when [`DIR`] is not what [`update`] would write.
pub(crate) fn check(root: &Path) -> Result<()> {
    let published = published_source(root)?;
    let scratch = root.join("target").join("vendor-check").join("aws-sdk-ec2");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing {}", scratch.display()))?;
    }
    let summary = derive(&published, &scratch)?;
    let committed = root.join(DIR);
    let differences = compare(&scratch, &committed)?;
    if !differences.is_empty() {
        bail!(
            "{DIR} is not the trimmed aws-sdk-ec2 {VERSION} (run `cargo xtask vendor-ec2`):\n  {}",
            differences.join("\n  ")
        );
    }
    eprintln!("{DIR} matches: {summary}");
    Ok(())
}

/// The published crate's directory, fetched by cargo (checksum-verified
/// against the registry index) through a scratch package outside the
/// workspace, where the workspace's `[patch]` does not apply.
fn published_source(root: &Path) -> Result<PathBuf> {
    let scratch = root.join("target").join("vendor-source");
    std::fs::create_dir_all(scratch.join("src"))
        .with_context(|| format!("creating {}", scratch.display()))?;
    std::fs::write(
        scratch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"ec2-source\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\naws-sdk-ec2 = \"={VERSION}\"\n\n[workspace]\n"
        ),
    )?;
    std::fs::write(scratch.join("src").join("lib.rs"), "")?;
    let mut cmd = crate::cargo(&scratch);
    cmd.args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(scratch.join("Cargo.toml"));
    let output = cmd.output().context("running `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` for aws-sdk-ec2 {VERSION} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading `cargo metadata`'s answer")?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "aws-sdk-ec2" && p["version"] == VERSION)
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| format!("`cargo metadata` does not list aws-sdk-ec2 {VERSION}"))?;
    let dir = Path::new(manifest)
        .parent()
        .context("aws-sdk-ec2's manifest has no directory")?;
    Ok(dir.to_path_buf())
}

/// Derive the trimmed crate from the published one in `published` into `out`.
fn derive(published: &Path, out: &Path) -> Result<Summary> {
    let crate_src = published.join("src");
    let sdk = Sdk::read(&crate_src)?;
    let kept = sdk.reachable(OPERATIONS)?;
    let mut summary = Summary {
        files: 0,
        bytes: 0,
        dropped_files: 0,
    };
    for rel in &sdk.files {
        let text = sdk.text(rel)?;
        let written = match family(rel) {
            Some(node) if !kept.contains(&node) => None,
            Some(_) => Some(text.to_owned()),
            None => Some(filter_items(
                rel,
                text,
                |segments| sdk.resolve(segments),
                |node| kept.contains(node),
            )?),
        };
        let Some(written) = written else {
            summary.dropped_files += 1;
            continue;
        };
        let path = out.join("src").join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        summary.files += 1;
        summary.bytes += written.len();
        std::fs::write(&path, written).with_context(|| format!("writing {}", path.display()))?;
    }
    for file in ["LICENSE", "README.md"] {
        std::fs::copy(published.join(file), out.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    let manifest = std::fs::read_to_string(published.join("Cargo.toml"))
        .context("reading aws-sdk-ec2's Cargo.toml")?;
    std::fs::write(out.join("Cargo.toml"), library_manifest(&manifest))?;
    Ok(summary)
}

/// What a derivation wrote.
struct Summary {
    files: usize,
    bytes: usize,
    dropped_files: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "aws-sdk-ec2 {VERSION} trimmed to {} operations: {} source files, {:.1} MB ({} files dropped)",
            OPERATIONS.len(),
            self.files,
            self.bytes as f64 / 1e6,
            self.dropped_files
        )
    }
}

/// The published manifest without its test targets and dev-dependencies,
/// which exercise the dropped operations (tests/ is not copied), without
/// its `[hints]` (nightly-only, a warning on stable for a path crate), and with
/// `dead_code` allowed: a shape kept for one direction only (sent, never
/// parsed) still carries the other direction's function.
fn library_manifest(manifest: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            skipping = line == "[[test]]"
                || line == "[hints]"
                || line.starts_with("[dev-dependencies")
                || line.starts_with("[target.") && line.contains("dev-dependencies");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n[lints.rust]\ndead_code = \"allow\"\n");
    out
}

/// A node of the reachability graph: a file (or an operation's files)
/// that exists for one operation or shape, or one function of the
/// crate's per-shape helper files.
type Node = String;

/// The node a source file belongs to, or `None` for the crate's own
/// machinery, which is kept (minus items naming dropped nodes).
fn family(rel: &str) -> Option<Node> {
    let (dir, rest) = rel.split_once('/')?;
    let stem = rest.strip_suffix(".rs");
    match dir {
        "operation" => {
            let op = rest.split('/').next()?;
            Some(format!("operation/{}", op.trim_end_matches(".rs")))
        }
        "client" if !rest.starts_with("customize") => stem.map(|s| format!("client/{s}")),
        "types" if rest.starts_with('_') => stem.map(|s| format!("types/{s}")),
        "protocol_serde" if rest.starts_with("shape_") => {
            stem.map(|s| format!("protocol_serde/{s}"))
        }
        "waiters" => stem.map(|s| format!("waiters/{s}")),
        _ => None,
    }
}

/// Files whose top-level functions are nodes of their own: one per shape
/// or paginated operation, in one file.
const ITEM_FILES: &[&str] = &["serde_util.rs", "lens.rs"];

/// The published crate's sources, read once.
struct Sdk {
    root: PathBuf,
    files: Vec<String>,
    texts: HashMap<String, String>,
    /// `Name` in `crate::types::Name` (and `NameBuilder` in
    /// `crate::types::builders::`) to the node defining it.
    type_nodes: HashMap<String, Node>,
    /// The text of each function of [`ITEM_FILES`], by node.
    item_texts: HashMap<Node, String>,
    /// The files of each file node.
    families: HashMap<Node, Vec<String>>,
}

impl Sdk {
    fn read(root: &Path) -> Result<Sdk> {
        let files: Vec<String> = files_below(root)?
            .into_iter()
            .filter(|f| f.ends_with(".rs"))
            .collect();
        let mut texts = HashMap::new();
        for rel in &files {
            let path = root.join(rel);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            texts.insert(rel.clone(), text);
        }
        let mut families: HashMap<Node, Vec<String>> = HashMap::new();
        for rel in &files {
            if let Some(node) = family(rel) {
                families.entry(node).or_default().push(rel.clone());
            }
        }
        let mut type_nodes = HashMap::new();
        for index in ["types.rs", "types/builders.rs"] {
            for line in texts.get(index).map(String::as_str).unwrap_or("").lines() {
                // `pub use crate::types::_instance::Instance;`
                let Some(path) = line
                    .strip_prefix("pub use crate::types::")
                    .and_then(|p| p.strip_suffix(';'))
                else {
                    continue;
                };
                if let Some((module, name)) = path.split_once("::") {
                    type_nodes.insert(name.to_owned(), format!("types/{module}"));
                }
            }
        }
        let mut item_texts = HashMap::new();
        for file in ITEM_FILES {
            let text = texts.get(*file).map(String::as_str).unwrap_or("");
            let lines = LineIndex::new(text);
            let parsed = syn::parse_file(text).with_context(|| format!("parsing {file}"))?;
            for item in &parsed.items {
                if let syn::Item::Fn(function) = item {
                    let range = lines.range(item.to_token_stream());
                    item_texts.insert(
                        item_node(file, &function.sig.ident.to_string()),
                        text[range].to_owned(),
                    );
                }
            }
        }
        Ok(Sdk {
            root: root.to_path_buf(),
            files,
            texts,
            type_nodes,
            item_texts,
            families,
        })
    }

    fn text(&self, rel: &str) -> Result<&str> {
        self.texts
            .get(rel)
            .map(String::as_str)
            .with_context(|| format!("{} was not read", self.root.join(rel).display()))
    }

    /// Every node the given operations reach.
    fn reachable(&self, operations: &[&str]) -> Result<BTreeSet<Node>> {
        let mut kept = BTreeSet::new();
        let mut work = Vec::new();
        for op in operations {
            for node in [format!("operation/{op}"), format!("client/{op}")] {
                if !self.families.contains_key(&node) {
                    bail!("aws-sdk-ec2 {VERSION} has no operation `{op}` ({node})");
                }
                work.push(node);
            }
        }
        while let Some(node) = work.pop() {
            if !kept.insert(node.clone()) {
                continue;
            }
            for text in self.node_texts(&node) {
                for reached in self.references(text) {
                    if !kept.contains(&reached) {
                        work.push(reached);
                    }
                }
            }
        }
        Ok(kept)
    }

    /// The source text that makes up a node.
    fn node_texts<'a>(&'a self, node: &str) -> Vec<&'a str> {
        if let Some(text) = self.item_texts.get(node) {
            return vec![text];
        }
        self.families
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|f| self.texts.get(f).map(String::as_str))
            .collect()
    }

    /// The nodes a piece of source names through `crate::…` paths.
    fn references(&self, text: &str) -> BTreeSet<Node> {
        crate_paths(&code_only(text))
            .filter_map(|segments| self.resolve(&segments))
            .collect()
    }

    fn resolve(&self, segments: &[&str]) -> Option<Node> {
        let family = |node: String| self.families.contains_key(&node).then_some(node);
        match segments {
            ["operation", op, ..] => family(format!("operation/{op}")),
            ["client", module, ..] => family(format!("client/{module}")),
            ["types", "builders", name, ..] => self.type_nodes.get(*name).cloned(),
            ["types", module, ..] if module.starts_with('_') => family(format!("types/{module}")),
            ["types", name, ..] => self.type_nodes.get(*name).cloned(),
            ["protocol_serde", module, ..] => family(format!("protocol_serde/{module}")),
            ["waiters", module, ..] => family(format!("waiters/{module}")),
            [module, function, ..] => {
                let node = item_node(&format!("{module}.rs"), function);
                self.item_texts.contains_key(&node).then_some(node)
            }
            _ => None,
        }
    }
}

fn item_node(file: &str, function: &str) -> Node {
    format!("{file}#{function}")
}

/// Every file below `dir`, relative to it, with `/` separators.
fn files_below(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(root)
                    .context("a listed file outside its directory")?;
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

/// The segments after each `crate::` in a text: `crate::types::Instance`
/// gives `["types", "Instance"]`.
fn crate_paths(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.match_indices("crate::").filter_map(|(at, _)| {
        // Not the tail of a longer name (`my_crate::`).
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let mut segments = Vec::new();
        let mut rest = &text[at + "crate::".len()..];
        loop {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            segments.push(&rest[..end]);
            match rest[end..].strip_prefix("::") {
                Some(next) => rest = next,
                None => break,
            }
        }
        (!segments.is_empty()).then_some(segments)
    })
}

/// `text` with its comment lines blanked: doc comments name paths (in
/// links and examples) that the code does not need.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` (the file `rel` of the machinery) without the items that name a
/// dropped node, looking inside `impl` and `trait` blocks. A file with
/// nothing to drop comes back unchanged.
fn filter_items(
    rel: &str,
    text: &str,
    resolve: impl Fn(&[&str]) -> Option<Node>,
    kept: impl Fn(&Node) -> bool,
) -> Result<String> {
    if !text.contains("crate::") && !text.contains("mod ") {
        return Ok(text.to_owned());
    }
    let parsed = syn::parse_file(text).with_context(|| format!("parsing {rel}"))?;
    let lines = LineIndex::new(text);
    // `mod name;` in `client.rs` is the file `client/name.rs`.
    let module_dir = match rel.strip_suffix(".rs") {
        Some("lib") => String::new(),
        Some(stem) => format!("{stem}/"),
        None => String::new(),
    };
    let names_dropped = |item: &dyn ToTokens, own_node: Option<Node>| -> bool {
        let range = lines.range(item.to_token_stream());
        own_node
            .into_iter()
            .chain(
                crate_paths(&code_only(&text[range]))
                    .filter_map(|segments| resolve(&segments))
                    .collect::<Vec<_>>(),
            )
            .any(|node| !kept(&node))
    };
    let mut drop = Vec::new();
    for item in &parsed.items {
        let own = match item {
            syn::Item::Mod(module) if module.content.is_none() => {
                family(&format!("{module_dir}{}.rs", module.ident))
            }
            syn::Item::Fn(function) if ITEM_FILES.contains(&rel) => {
                Some(item_node(rel, &function.sig.ident.to_string()))
            }
            _ => None,
        };
        // An `impl` or `trait` block stays when its header names nothing
        // dropped; its members are then judged one by one.
        let members: Vec<&dyn ToTokens> = match item {
            syn::Item::Impl(block) => block.items.iter().map(|i| i as &dyn ToTokens).collect(),
            syn::Item::Trait(block) => block.items.iter().map(|i| i as &dyn ToTokens).collect(),
            _ => Vec::new(),
        };
        let header_dropped = match item {
            syn::Item::Impl(block) => {
                names_dropped(&*block.self_ty, None)
                    || names_dropped(&block.generics, None)
                    || block
                        .trait_
                        .as_ref()
                        .is_some_and(|(_, path, _)| names_dropped(path, None))
            }
            syn::Item::Trait(block) => {
                names_dropped(&block.generics, None)
                    || block
                        .supertraits
                        .iter()
                        .any(|bound| names_dropped(bound, None))
            }
            _ => names_dropped(item, own),
        };
        if header_dropped {
            drop.push(lines.range(item.to_token_stream()));
            continue;
        }
        for inner in members {
            if names_dropped(inner, None) {
                drop.push(lines.range(inner.to_token_stream()));
            }
        }
    }
    Ok(without(text, drop))
}

/// `text` without the byte ranges in `drop`, and without the indentation
/// before and the line end and blank line after each.
fn without(text: &str, mut drop: Vec<std::ops::Range<usize>>) -> String {
    drop.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for range in drop {
        if range.start < at {
            continue;
        }
        // With the indentation before it, when it starts its line.
        let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
        let start = if text[line_start..range.start].trim().is_empty() {
            line_start.max(at)
        } else {
            range.start
        };
        out.push_str(&text[at..start]);
        let mut end = range.end;
        for _ in 0..2 {
            if text[end..].starts_with('\n') {
                end += 1;
            }
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Byte offsets of a text's lines, to turn token positions into ranges.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    fn offset(&self, at: LineColumn) -> usize {
        let start = self
            .starts
            .get(at.line - 1)
            .copied()
            .unwrap_or(self.text.len());
        let line = &self.text[start..];
        start
            + line
                .char_indices()
                .nth(at.column)
                .map_or(line.len(), |(i, _)| i)
    }

    /// From the first token of `tokens` (its attributes and doc comments
    /// included) to the end of the last.
    fn range(&self, tokens: TokenStream) -> std::ops::Range<usize> {
        let mut tokens = tokens.into_iter();
        let Some(first) = tokens.next() else {
            return 0..0;
        };
        let last = tokens.last().unwrap_or_else(|| first.clone());
        self.offset(first.span().start())..self.offset(last.span().end())
    }
}

/// How the trees `derived` and `committed` differ, file by file.
fn compare(derived: &Path, committed: &Path) -> Result<Vec<String>> {
    let read_tree = |dir: &Path| -> Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        if dir.is_dir() {
            for rel in files_below(dir)? {
                let path = dir.join(&rel);
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                files.insert(rel, bytes);
            }
        }
        Ok(files)
    };
    let ours = read_tree(derived)?;
    let theirs = read_tree(committed)?;
    let mut differences = Vec::new();
    for (file, bytes) in &ours {
        match theirs.get(file) {
            None => differences.push(format!("{file}: missing")),
            Some(other) if other != bytes => differences.push(format!("{file}: differs")),
            Some(_) => {}
        }
    }
    for file in theirs.keys().filter(|f| !ours.contains_key(*f)) {
        differences.push(format!("{file}: not part of the trimmed crate"));
    }
    differences.truncate(20);
    Ok(differences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_name_nothing() {
        let text =
            "/// see [`X`](crate::types::X)\nfn f() -> crate::types::Y {}\n    // crate::lens::g\n";
        let paths: Vec<Vec<String>> = crate_paths(&code_only(text))
            .map(|p| p.into_iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(paths, vec![vec!["types".to_owned(), "Y".to_owned()]]);
    }

    #[test]
    fn crate_paths_are_split_into_segments() {
        let text = "x: crate::types::Instance, y: my_crate::a, crate::lens::f(z)";
        let paths: Vec<Vec<&str>> = crate_paths(text).collect();
        assert_eq!(paths, vec![vec!["types", "Instance"], vec!["lens", "f"]]);
    }

    #[test]
    fn files_belong_to_their_operation_or_shape() {
        assert_eq!(
            family("operation/describe_instances/builders.rs").as_deref(),
            Some("operation/describe_instances")
        );
        assert_eq!(
            family("operation/describe_instances.rs").as_deref(),
            Some("operation/describe_instances")
        );
        assert_eq!(
            family("types/_instance.rs").as_deref(),
            Some("types/_instance")
        );
        assert_eq!(family("types/builders.rs"), None);
        assert_eq!(family("client/customize/internal.rs"), None);
        assert_eq!(family("config.rs"), None);
    }

    #[test]
    fn items_naming_a_dropped_node_are_removed_with_their_docs() {
        let text = "\
/// kept
pub use crate::types::_kept::Kept;

/// dropped
pub use crate::types::_gone::Gone;

mod _kept;

mod _gone;

impl Client {
    fn a(&self) -> crate::operation::kept::Out { todo!() }
    /// docs of b
    fn b(&self) -> crate::operation::gone::Out { todo!() }
}
";
        let kept = |node: &Node| !node.ends_with("gone") && !node.ends_with("_gone");
        let resolve = |segments: &[&str]| match segments {
            [dir @ ("operation" | "types"), module, ..] => Some(format!("{dir}/{module}")),
            _ => None,
        };
        let out = filter_items("types.rs", text, resolve, kept).expect("filtered");
        assert!(out.contains("Kept") && out.contains("mod _kept;"), "{out}");
        assert!(out.contains("fn a("), "{out}");
        assert!(!out.contains("Gone") && !out.contains("_gone"), "{out}");
        assert!(
            !out.contains("fn b(") && !out.contains("docs of b"),
            "{out}"
        );
        assert!(!out.contains("dropped"), "{out}");
    }

    #[test]
    fn the_manifest_loses_its_tests_and_dev_dependencies() {
        let manifest = "[package]\nname = \"x\"\n\n[[test]]\nname = \"t\"\npath = \"tests/t.rs\"\n\n\
                        [dependencies.a]\nversion = \"1\"\n\n[dev-dependencies.b]\nversion = \"1\"\n";
        let out = library_manifest(manifest);
        assert!(out.contains("[dependencies.a]"), "{out}");
        assert!(
            !out.contains("[[test]]") && !out.contains("dev-dependencies"),
            "{out}"
        );
    }
}
