//! The languages a wasmonkey plugin can be written in. One list, shared by
//! `wasmonkey new` (which writes a project) and `wasmonkey-plugin-build`
//! (which recognises and builds one, for `wasmonkey plugin build` and the
//! xtask), so that they cannot disagree.

/// A language a plugin project can be made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Lang {
    /// Rust, with wit-bindgen.
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
    /// C, with wit-bindgen's C bindings and clang.
    C,
    /// Zig, with wit-bindgen's C bindings.
    Zig,
}

impl Lang {
    /// Every language, in the order of `--lang`'s help.
    pub const ALL: [Lang; 5] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C, Lang::Zig];

    /// The name `--lang` takes.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
            Lang::Zig => "zig",
        }
    }

    /// The language's name in prose.
    pub fn language(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::C => "C",
            Lang::Zig => "Zig",
        }
    }

    /// The file that marks a project of this language: a Cargo.toml (a
    /// cdylib crate), or the module, class or exports file of the others.
    pub fn source(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Python => "plugin.py",
            Lang::Js => "plugin.js",
            Lang::C => "plugin.c",
            Lang::Zig => "plugin.zig",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_marker_files_are_distinct() {
        let names: std::collections::BTreeSet<_> = Lang::ALL.iter().map(|l| l.name()).collect();
        let files: std::collections::BTreeSet<_> = Lang::ALL.iter().map(|l| l.source()).collect();
        assert_eq!(names.len(), Lang::ALL.len());
        assert_eq!(files.len(), Lang::ALL.len());
    }
}
