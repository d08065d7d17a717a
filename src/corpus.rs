//! Reproducer files (`.ptd`): a header of `# key: value` comments stating the
//! variants, kernel and expected outcome, then the program text. Replay, atomic
//! writes and the findings folder live here.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::check::{check, Outcome, Pair};
use crate::model::{Config, Kernel, VARIANT_NAMES};
use crate::op::Program;
use crate::text::{self, ParseError};

/// What a reproducer expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The variants agree.
    Pass,
    /// The variants diverge with this signature slug.
    Diverges(String),
}

/// A parsed reproducer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reproducer {
    pub pair: Pair,
    pub expect: Option<Expect>,
    pub program: Program,
}

/// An error in a file, with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.msg)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.col,
                self.msg
            )
        }
    }
}

impl std::error::Error for FileError {}

/// Parse a reproducer's text. Header keys (in `#` comments): `variants: A vs B`,
/// `kernel: v6.1|v6.1.y`, `expect: pass | diverges SIGNATURE`.
pub fn parse_reproducer(text: &str) -> Result<Reproducer, ParseError> {
    let mut names: Option<(String, String, usize)> = None;
    let mut kernel = Kernel::V61;
    let mut expect = None;
    for (i, line) in text.lines().enumerate() {
        let Some(c) = line.find('#') else { continue };
        let comment = line[c + 1..].trim();
        let col = c + 2 + (line[c + 1..].len() - line[c + 1..].trim_start().len());
        let Some((key, val)) = comment.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let vcol = col
            + key.len()
            + 1
            + (comment[key.len() + 1..].len() - comment[key.len() + 1..].trim_start().len());
        let err = |msg: String| {
            Err(ParseError {
                line: i + 1,
                col: vcol,
                msg,
            })
        };
        match key.trim() {
            "variants" => {
                let Some((a, b)) = val.split_once(" vs ") else {
                    return err(format!("expected `variants: A vs B`, found `{val}`"));
                };
                names = Some((a.trim().to_string(), b.trim().to_string(), i + 1));
            }
            "kernel" => match Kernel::parse(val) {
                Some(k) => kernel = k,
                None => return err(format!("unknown kernel `{val}` (known: v6.1, v6.1.y)")),
            },
            "expect" => {
                expect = Some(if val == "pass" {
                    Expect::Pass
                } else if let Some(sig) = val.strip_prefix("diverges") {
                    Expect::Diverges(sig.trim().to_string())
                } else {
                    return err(format!(
                        "expected `expect: pass` or `expect: diverges SIGNATURE`, found `{val}`"
                    ));
                });
            }
            _ => {}
        }
    }
    let pair = match names {
        None => Pair {
            a: with_kernel(Pair::default().a, kernel),
            b: with_kernel(Pair::default().b, kernel),
        },
        Some((a, b, line)) => {
            let parse = |n: &str| {
                Config::parse_variant(n, kernel).ok_or_else(|| ParseError {
                    line,
                    col: 1,
                    msg: format!("unknown variant `{n}` (known: {VARIANT_NAMES})"),
                })
            };
            Pair {
                a: parse(&a)?,
                b: parse(&b)?,
            }
        }
    };
    let program = text::parse(text)?;
    Ok(Reproducer {
        pair,
        expect,
        program,
    })
}

fn with_kernel(mut c: Config, k: Kernel) -> Config {
    c.kernel = k;
    c
}

/// Read and parse a reproducer file; errors name the file (and line:column).
pub fn load(path: &Path) -> Result<Reproducer, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError {
        path: path.into(),
        line: 0,
        col: 0,
        msg: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| FileError {
        path: path.into(),
        line: 0,
        col: 0,
        msg: format!(
            "not UTF-8 text (byte {}); raw libFuzzer inputs need `ptediff fmt`",
            e.utf8_error().valid_up_to()
        ),
    })?;
    parse_reproducer(&text).map_err(|e| FileError {
        path: path.into(),
        line: e.line,
        col: e.col,
        msg: e.msg,
    })
}

/// The file text for a reproducer: header comments, then the program.
pub fn render(pair: &Pair, outcome: &Outcome, program: &Program, title: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# ptediff reproducer");
    if let Some(t) = title {
        let _ = writeln!(s, "# {t}");
    }
    let (a, b) = pair.names();
    let _ = writeln!(s, "# variants: {a} vs {b}");
    let _ = writeln!(s, "# kernel: {}", pair.a.kernel.name());
    match &outcome.divergence {
        None => {
            let _ = writeln!(s, "# expect: pass");
        }
        Some(d) => {
            let _ = writeln!(s, "# expect: diverges {}", d.signature);
            for line in outcome.report().lines() {
                let _ = writeln!(s, "#   {line}");
            }
        }
    }
    s.push_str(&program.to_string());
    s
}

/// Write `contents` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Replay verdict of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Expected pass, and the variants agree.
    Pass,
    /// Expected this divergence, and got it.
    Diverges,
    /// The outcome differs from the file's expectation (or the file has none and diverges).
    Mismatch(String),
}

/// Replay one reproducer against its expectation.
pub fn replay(r: &Reproducer) -> (Verdict, Outcome) {
    let out = check(&r.program, &r.pair);
    let got = out.divergence.as_ref().map(|d| d.signature.slug());
    let verdict = match (&r.expect, got) {
        (Some(Expect::Pass) | None, None) => Verdict::Pass,
        (Some(Expect::Diverges(want)), Some(g)) if *want == g || want.is_empty() => {
            Verdict::Diverges
        }
        (Some(Expect::Pass), Some(g)) => {
            Verdict::Mismatch(format!("expected pass, got divergence {g}"))
        }
        (Some(Expect::Diverges(want)), Some(g)) => {
            Verdict::Mismatch(format!("expected divergence {want}, got {g}"))
        }
        (Some(Expect::Diverges(want)), None) => {
            Verdict::Mismatch(format!("expected divergence {want}, got pass"))
        }
        (None, Some(g)) => Verdict::Mismatch(format!("no `# expect:` header; got divergence {g}")),
    };
    (verdict, out)
}

/// Expand files and folders (folders: their `*.ptd` files, sorted).
pub fn collect_files(args: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(a)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ptd"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// One line of `findings.json`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FindingRecord {
    pub signature: String,
    pub variants: (String, String),
    pub kernel: String,
    pub file: String,
    pub first_step: usize,
    pub first_op: String,
    pub pages: Vec<crate::check::PageDiff>,
    pub program: String,
    pub hits: u64,
}
