//! Reproducer files (`.ptd`): a header of `# key: value` comments stating the
//! variants, kernel and expected outcome, then the program text. Replay and
//! atomic writes live here; the findings database is [`crate::findings`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::check::{check, Kind, Outcome, Pair, Signature};
use crate::model::{Config, Kernel, VARIANT_NAMES};
use crate::op::Program;
use crate::text::{self, ParseError};

/// What a reproducer expects of the divergence check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The variants agree.
    Pass,
    /// The variants diverge with this signature.
    Diverges(Signature),
}

/// A parsed reproducer file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reproducer {
    pub pair: Pair,
    /// `# expect: pass | diverges SIGNATURE`
    pub expect: Option<Expect>,
    /// `# expect-oracle: none | SIGNATURE` (absent: violations are reported, not checked)
    pub expect_oracle: Option<Option<Signature>>,
    /// `# hits: N` (findings database; the sum of `runs` in files that have them)
    pub hits: u64,
    /// `# hits from run ID: N` lines (findings database: each run's own count).
    pub runs: BTreeMap<String, u64>,
    pub program: Program,
}

/// Is `id` a run id (`[A-Za-z0-9._-]+`)?
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
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
            write!(f, "{}:{}:{}: {}", self.path.display(), self.line, self.col, self.msg)
        }
    }
}

impl std::error::Error for FileError {}

/// Parse a reproducer's text. Header keys (in `#` comments): `variants: A vs B`,
/// `kernel: v6.1|v6.1.y|v6.12|v6.18|v7.3`, `contracts: all|none|U+S+C+N+P`
/// (default all), `expect: pass | diverges SIGNATURE`,
/// `expect-oracle: none | SIGNATURE`, `hits: N`, `hits from run ID: N`.
pub fn parse_reproducer(text: &str) -> Result<Reproducer, ParseError> {
    let mut names: Option<(String, String, usize)> = None;
    let mut kernel = Kernel::V61;
    let mut expect = None;
    let mut expect_oracle = None;
    let mut hits = 0;
    let mut contracts = None;
    let mut runs = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let Some(c) = line.find('#') else { continue };
        let comment = &line[c + 1..];
        let Some((key, val)) = comment.split_once(':') else {
            continue;
        };
        let vcol = c + 2 + key.len() + (val.len() - val.trim_start().len()) + 1;
        let val = val.trim();
        let err = |msg: String| Err(ParseError { line: i + 1, col: vcol, msg });
        match key.trim() {
            "variants" => {
                let Some((a, b)) = val.split_once(" vs ") else {
                    return err(format!("expected `variants: A vs B`, found `{val}`"));
                };
                names = Some((a.trim().to_string(), b.trim().to_string(), i + 1));
            }
            "kernel" => match Kernel::parse(val) {
                Some(k) => kernel = k,
                None => return err(format!("unknown kernel `{val}` (known: {})", crate::model::KERNEL_NAMES)),
            },
            "expect" => {
                expect = Some(if val == "pass" {
                    Expect::Pass
                } else if let Some(sig) = val.strip_prefix("diverges") {
                    let sig = sig.trim();
                    match sig.parse() {
                        Ok(sig) => Expect::Diverges(sig),
                        Err(e) => return Err(ParseError { line: i + 1, col: vcol + (val.len() - sig.len()), msg: e }),
                    }
                } else {
                    return err(format!("expected `expect: pass` or `expect: diverges SIGNATURE`, found `{val}`"));
                });
            }
            "expect-oracle" => {
                expect_oracle = Some(if val == "none" {
                    None
                } else {
                    match val.parse::<Signature>() {
                        Ok(sig) if sig.kind() == Kind::Oracle => Some(sig),
                        Ok(_) => return err(format!("`expect-oracle:` takes an oracle signature (oracle....), found `{val}`")),
                        Err(e) => return err(e),
                    }
                })
            }
            "contracts" => match parse_contracts(val) {
                Some(c) => contracts = Some(c),
                None => {
                    return err(format!(
                        "unknown contracts `{val}` (expected `all`, `none` or letters joined by `+`: U uffd-wp, S soft-dirty, C COW, N writenotify, P mprotect)"
                    ))
                }
            },
            "hits" => match val.parse() {
                Ok(n) => hits = n,
                Err(_) => return err(format!("expected a count, found `{val}`")),
            },
            k if k.starts_with("hits from run ") => {
                let id = k["hits from run ".len()..].trim();
                if !valid_run_id(id) {
                    return Err(ParseError {
                        line: i + 1,
                        col: c + 1,
                        msg: format!("expected `# hits from run ID: N` with ID of [A-Za-z0-9._-], found run `{id}`"),
                    });
                }
                match val.parse::<u64>() {
                    // The same run twice (a hand-merged file): its larger count.
                    Ok(n) => {
                        let e = runs.entry(id.to_string()).or_insert(0);
                        *e = n.max(*e);
                    }
                    Err(_) => return err(format!("expected a count, found `{val}`")),
                }
            }
            _ => {}
        }
    }
    let pair = match names {
        None => {
            let d = Pair::default();
            d.with_sides(Config { kernel, ..d.a }, Config { kernel, ..d.b })
        }
        Some((a, b, line)) => {
            let parse = |n: &str| {
                Config::parse_variant(n, kernel).ok_or_else(|| ParseError {
                    line,
                    col: 1,
                    msg: format!("unknown variant `{n}` (known: {VARIANT_NAMES})"),
                })
            };
            Pair::new(parse(&a)?, parse(&b)?)
        }
    };
    let mut pair = pair;
    if let Some(c) = contracts {
        pair.contracts = c;
    }
    let program = text::parse(text)?;
    if !runs.is_empty() {
        hits = runs.values().sum();
    }
    Ok(Reproducer { pair, expect, expect_oracle, hits, runs, program })
}

/// `all`, `none`, or contract letters joined by `+` (`U+S`).
pub fn parse_contracts(s: &str) -> Option<crate::judge::contracts::Contract> {
    match s {
        "all" => Some(crate::judge::contracts::Contract::all()),
        _ => crate::judge::contracts::Contract::parse(s),
    }
}

/// Read and parse a reproducer file; errors name the file (and line:column).
pub fn load(path: &Path) -> Result<Reproducer, FileError> {
    let bytes =
        std::fs::read(path).map_err(|e| FileError { path: path.into(), line: 0, col: 0, msg: e.to_string() })?;
    let text = String::from_utf8(bytes).map_err(|e| FileError {
        path: path.into(),
        line: 0,
        col: 0,
        msg: format!("not UTF-8 text (byte {}); raw libFuzzer inputs need `ptediff fmt`", e.utf8_error().valid_up_to()),
    })?;
    parse_reproducer(&text).map_err(|e| FileError { path: path.into(), line: e.line, col: e.col, msg: e.msg })
}

/// How to render a reproducer.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOpts<'a> {
    /// Extra comment lines at the top.
    pub note: Option<&'a str>,
    /// `# hits:` (findings database).
    pub hits: Option<u64>,
    /// `# hits from run ID: N` lines after the program (findings database).
    pub runs: Option<&'a BTreeMap<String, u64>>,
    /// State `# expect-oracle:` (findings of `--oracle`, corpus exports).
    pub expect_oracle: bool,
    /// Append the full report as comments.
    pub report: bool,
    /// `# finding: SIGNATURE`: the finding a findings-database bucket stands for.
    pub finding: Option<crate::check::Signature>,
}

/// The file text for a reproducer: header comments, then the program. The text
/// is itself a runnable test: `ptediff replay` checks the `# expect:` lines.
pub fn render(pair: &Pair, outcome: &Outcome, program: &Program, o: RenderOpts) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# ptediff reproducer");
    if let Some(d) = &outcome.divergence {
        let _ = writeln!(s, "# {}", d.finding.title);
    } else if let Some(v) = &outcome.violation {
        let _ = writeln!(s, "# {}", v.finding.title);
    }
    if let Some(n) = o.note {
        for l in n.lines() {
            let _ = writeln!(s, "# {l}");
        }
    }
    if let Some(f) = o.finding {
        let _ = writeln!(s, "# finding: {f}");
    }
    let (a, b) = pair.names();
    let _ = writeln!(s, "# variants: {a} vs {b}");
    let _ = writeln!(s, "# kernel: {}", pair.a.kernel.name());
    if pair.contracts != crate::judge::contracts::Contract::all() {
        let c = pair.contracts;
        let _ = writeln!(s, "# contracts: {}", if c.is_empty() { "none".into() } else { c.letters() });
    }
    match &outcome.divergence {
        None => {
            let _ = writeln!(s, "# expect: pass");
        }
        Some(d) => {
            let _ = writeln!(s, "# expect: diverges {}", d.finding.signature);
        }
    }
    if o.expect_oracle {
        match &outcome.violation {
            None => {
                let _ = writeln!(s, "# expect-oracle: none");
            }
            Some(v) => {
                let _ = writeln!(s, "# expect-oracle: {}", v.finding.signature);
            }
        }
    }
    if let Some(h) = o.hits {
        let _ = writeln!(s, "# hits: {h}");
    }
    if o.report {
        for line in outcome.report().lines() {
            let _ = writeln!(s, "#   {line}");
        }
    }
    s.push_str(&program.to_string());
    if let Some(runs) = o.runs {
        if !runs.is_empty() {
            let _ =
                writeln!(s, "# hits per run below (each run counts its own; merging keeps each run's largest count)");
        }
        for (id, n) in runs {
            let _ = writeln!(s, "# hits from run {id}: {n}");
        }
    }
    s
}

/// Name prefix of [`write_atomic`]'s temporary files (a killed writer may leave one).
pub const TMP_PREFIX: &str = ".ptediff-";

/// Write `contents` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(TMP_PREFIX).suffix(".tmp").tempfile_in(dir)?;
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

/// Replay one reproducer against its expectations.
pub fn replay(r: &Reproducer) -> (Verdict, Outcome) {
    let out = check(&r.program, &r.pair);
    let got = out.divergence.as_ref().map(|d| d.finding.signature);
    let mut verdict = match (&r.expect, got) {
        (Some(Expect::Pass) | None, None) => Verdict::Pass,
        (Some(Expect::Diverges(want)), Some(g)) if *want == g => Verdict::Diverges,
        (Some(Expect::Pass), Some(g)) => Verdict::Mismatch(format!("expected pass, got divergence {g}")),
        (Some(Expect::Diverges(want)), Some(g)) => Verdict::Mismatch(format!("expected divergence {want}, got {g}")),
        (Some(Expect::Diverges(want)), None) => Verdict::Mismatch(format!("expected divergence {want}, got pass")),
        (None, Some(g)) => Verdict::Mismatch(format!("no `# expect:` header; got divergence {g}")),
    };
    if let Some(want) = &r.expect_oracle {
        let got = out.violation.as_ref().map(|v| v.finding.signature);
        if *want != got && !matches!(verdict, Verdict::Mismatch(_)) {
            let show = |x: &Option<Signature>| x.map_or_else(|| "none".into(), |s| s.to_string());
            verdict = Verdict::Mismatch(format!("expected oracle {}, got {}", show(want), show(&got)));
        }
    }
    (verdict, out)
}

/// Rewrite a reproducer's `# expect:` and `# expect-oracle:` lines to the outcome
/// it has now (after an intended model change), atomically; every other line is
/// kept. Missing lines are added after `# kernel:` (or at the top).
pub fn bless(path: &Path, text: &str, out: &Outcome) -> std::io::Result<()> {
    let expect = match &out.divergence {
        None => "# expect: pass".to_string(),
        Some(d) => format!("# expect: diverges {}", d.finding.signature),
    };
    let oracle = match &out.violation {
        None => "# expect-oracle: none".to_string(),
        Some(v) => format!("# expect-oracle: {}", v.finding.signature),
    };
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("# expect:") && !l.starts_with("# expect-oracle:"))
        .map(String::from)
        .collect();
    let at = lines.iter().position(|l| l.starts_with("# kernel:")).map_or(0, |i| i + 1);
    lines.insert(at, oracle);
    lines.insert(at, expect);
    let mut s = lines.join("\n");
    s.push('\n');
    write_atomic(path, s.as_bytes())
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
