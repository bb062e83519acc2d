//! `wasmonkey new`: a plugin project in any of the supported languages that
//! builds (`wasmonkey plugin build DIR`, no wasmonkey checkout needed) and
//! loads (`wasmonkey plugins inspect NAME --config DIR/try.toml`) as it is.
//!
//! The templates are in the repository's `templates/`, embedded in the
//! binary; each project gets a copy of the contract version it is written
//! for (`wit/`, the newest unless asked), so it builds wherever it lives.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::contract::Version;

pub(crate) use wasmonkey_lang::Lang;

/// What a language's project is made of: the templates live beside the
/// scaffolder, the list of languages in `wasmonkey-lang`.
trait Templates {
    fn sources(self) -> &'static [(&'static str, &'static str)];
    fn build_note(self) -> &'static str;
}

impl Templates for Lang {
    /// The project's source files, as `(path, template)`.
    fn sources(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => &[
                (
                    "Cargo.toml",
                    include_str!("../../templates/rust/Cargo.toml"),
                ),
                (
                    "src/lib.rs",
                    include_str!("../../templates/rust/src/lib.rs"),
                ),
            ],
            Lang::Python => &[(
                "plugin.py",
                include_str!("../../templates/python/plugin.py"),
            )],
            Lang::Js => &[("plugin.js", include_str!("../../templates/js/plugin.js"))],
            Lang::C => &[("plugin.c", include_str!("../../templates/c/plugin.c"))],
            Lang::Zig => &[("plugin.zig", include_str!("../../templates/zig/plugin.zig"))],
        }
    }

    /// What the README adds about building.
    fn build_note(self) -> &'static str {
        match self {
            Lang::Rust => {
                "Rust is built for `wasm32-unknown-unknown` with rustup's target if \
                 it is installed, else with Debian's rustc-web, set up in the \
                 toolchains directory, building std from source (a minute the first \
                 time)."
            }
            Lang::Python => {
                "The component bundles CPython (about 18 MB); its first load compiles \
                 it (seconds), later loads come from the compiled cache."
            }
            Lang::Js => {
                "The component bundles StarlingMonkey, a SpiderMonkey build (about \
                 12 MB); its first load compiles it, later loads come from the \
                 compiled cache."
            }
            Lang::C => {
                "The C bindings (`build/gen/`) are generated from `wit/` by wit-bindgen \
                 at each build; clang is the wasi-sdk's in `WASI_SDK_PATH` if set."
            }
            Lang::Zig => {
                "The C bindings (`build/gen/`) are generated from `wit/` by wit-bindgen \
                 and translated to Zig (`bindings.zig`) at each build; Zig 0.17 is \
                 the one on `PATH` if it is that version."
            }
        }
    }
}

/// Files every project gets, as `(path, template)`.
const COMMON: &[(&str, &str)] = &[
    (
        "wasmonkey.toml",
        include_str!("../../templates/common/wasmonkey.toml"),
    ),
    (
        "README.md",
        include_str!("../../templates/common/README.md"),
    ),
    ("try.toml", include_str!("../../templates/common/try.toml")),
    ("ci.sh", include_str!("../../templates/common/ci.sh")),
    (
        "fleet.toml",
        include_str!("../../templates/common/fleet.toml"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/common/gitignore"),
    ),
];

/// Check a plugin name: lowercase letters, digits and `-`, starting with a
/// letter (it is a file stem, a crate name and a manifest name).
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "plugin name {name:?}: use 1 to 64 lowercase letters, digits and `-`, starting with a \
             letter and not ending with `-` (e.g. `my-strategy`)"
        );
    }
    Ok(())
}

/// Parse `--contract`: a version number this host speaks.
pub(crate) fn parse_contract(number: &str) -> Result<Version, String> {
    Version::parse(number).ok_or_else(|| {
        format!(
            "this host speaks contract {}",
            Version::ALL.map(Version::number).join(", ")
        )
    })
}

/// `wasmonkey wit`: write `contract`'s WIT files into `dir`. A file already
/// there with other text is never overwritten: then nothing is written,
/// and the error names each such file. Returns each file and whether it was
/// `written` or already `unchanged`.
pub(crate) fn write_wit(
    contract: Version,
    dir: &Path,
) -> anyhow::Result<Vec<(PathBuf, &'static str)>> {
    let files: Vec<(PathBuf, &str)> = contract
        .wit_files()
        .iter()
        .map(|(file, text)| (dir.join(file), *text))
        .collect();
    let mut differing = Vec::new();
    let mut states = Vec::new();
    for (path, text) in &files {
        match std::fs::read(path) {
            Ok(there) if there == text.as_bytes() => states.push("unchanged"),
            Ok(_) => differing.push(path.display().to_string()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => states.push("written"),
            Err(err) => anyhow::bail!("{}: cannot read: {err}", path.display()),
        }
    }
    if !differing.is_empty() {
        anyhow::bail!(
            "{} already hold(s) other text than contract {}'s; nothing was written (remove them, or choose another --dir)",
            differing.join(", "),
            contract.number()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(files
        .into_iter()
        .map(|(path, _)| path)
        .zip(states)
        .collect())
}

/// Write a new `lang` project for plugin `name`, against `contract`, into
/// `dir`, which must not exist or be empty. Returns the files written.
pub(crate) fn create(
    lang: Lang,
    contract: Version,
    name: &str,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot read the directory", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{}: already exists and is not empty; choose another --dir",
                dir.display()
            );
        }
    }
    let source = lang.sources()[0].0;
    let description = format!(
        "A wasmonkey chaos strategy in {}: terminates one random healthy instance",
        lang.language()
    );
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{lang}}", lang.name())
            .replace("{{language}}", lang.language())
            .replace("{{description}}", &description)
            .replace("{{source}}", source)
            .replace("{{build_note}}", lang.build_note())
            .replace("{{contract}}", contract.number())
    };
    // The contract is copied as it is, the templates filled in.
    let wit = contract
        .wit_files()
        .iter()
        .map(|(file, text)| (format!("wit/{file}"), (*text).to_owned()));
    let filled = COMMON
        .iter()
        .chain(lang.sources())
        .map(|(path, template)| ((*path).to_owned(), fill(template)));
    let mut written = Vec::new();
    for (path, text) in filled.chain(wit) {
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create the directory", parent.display()))?;
        }
        std::fs::write(&target, text)
            .with_context(|| format!("{}: cannot write", target.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("{}: cannot make it executable", target.display()))?;
        }
        written.push(target);
    }
    Ok(written)
}

/// `wasmonkey new`: create the project and say what to do next.
pub(crate) fn run(
    lang: Lang,
    contract: Version,
    name: &str,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let written = create(lang, contract, name, &dir)?;
    // Written, not `println!`: a closed stdout is an error, not a panic.
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "created {} plugin `{name}` for contract {} in {} ({} files)",
        lang.language(),
        contract.package(),
        dir.display(),
        written.len()
    )?;
    writeln!(
        stdout,
        "build it:      wasmonkey plugin build {}",
        dir.display()
    )?;
    writeln!(
        stdout,
        "then load it:  wasmonkey plugins inspect {name} --config {}",
        dir.join("try.toml").display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "my-strategy", "x2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My", "2x", "a_b", "a-", "a/b", "../x"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("plugin name"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_language_gets_its_source_the_contract_and_a_config() {
        for (lang, contract) in [Lang::Rust, Lang::Python, Lang::Js, Lang::C, Lang::Zig]
            .into_iter()
            .flat_map(|lang| Version::ALL.map(|contract| (lang, contract)))
        {
            let dir = tempfile::tempdir().unwrap();
            let project = dir.path().join("p");
            let written = create(lang, contract, "my-strategy", &project).unwrap();
            assert!(written.iter().any(|p| p.ends_with("wit/strategy.wit")));
            let wit = std::fs::read_to_string(project.join("wit/types.wit")).unwrap();
            assert!(wit.starts_with(&format!("package {};", contract.package())));
            let manifest = std::fs::read_to_string(project.join("wasmonkey.toml")).unwrap();
            assert!(manifest.contains("name = \"my-strategy\""), "{manifest}");
            let source = std::fs::read_to_string(project.join(lang.sources()[0].0)).unwrap();
            assert!(
                !source.contains("{{"),
                "{lang:?}: unfilled template:\n{source}"
            );
            // A second time into the same directory is refused.
            let err = create(lang, contract, "my-strategy", &project)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not empty"), "{err}");
        }
    }
}
