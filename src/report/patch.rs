//! `git format-patch` files: a fix from `patches/<fix>/<profile>.patch` with its
//! commit message (`patches/<fix>/message`), and a selftest added to a kernel
//! tree's `tools/testing/selftests/mm` (its Makefile, .gitignore and
//! run_vmtests.sh lines, with context taken from that tree).

use std::fmt::Write as _;
use std::path::Path;

/// One file's change in a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    /// A file the patch creates.
    pub new: bool,
    /// The hunks (`@@ ... @@` lines and what follows them), each line with its newline.
    pub hunks: String,
}

impl FileDiff {
    fn counts(&self) -> (usize, usize) {
        let (mut add, mut del) = (0, 0);
        for l in self.hunks.lines() {
            if l.starts_with('+') {
                add += 1;
            } else if l.starts_with('-') {
                del += 1;
            }
        }
        (add, del)
    }
}

/// A commit message: subject, body paragraphs (already wrapped) and trailers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
    pub trailers: Vec<String>,
}

impl Message {
    /// Parse `patches/<fix>/message`: the subject on line 1, a blank line, the
    /// body, then the trailer block (its last paragraph of `Key: value` lines).
    pub fn parse(path: &Path, text: &str) -> Result<Message, String> {
        let mut lines = text.lines();
        let subject = lines.next().unwrap_or("").trim().to_string();
        if subject.is_empty() {
            return Err(format!("{}:1:1: the first line must be the subject", path.display()));
        }
        if lines.next().is_some_and(|l| !l.trim().is_empty()) {
            return Err(format!("{}:2:1: a blank line must follow the subject", path.display()));
        }
        let rest: Vec<&str> = lines.collect();
        let paras: Vec<&[&str]> = rest.split(|l| l.trim().is_empty()).filter(|p| !p.is_empty()).collect();
        let is_trailer = |l: &&str| {
            l.split_once(": ")
                .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        };
        let (body, trailers) = match paras.split_last() {
            Some((last, body)) if last.iter().all(is_trailer) => (body, last.iter().map(|s| s.to_string()).collect()),
            _ => (&paras[..], Vec::new()),
        };
        let body = body.iter().map(|p| p.join("\n")).collect::<Vec<_>>().join("\n\n");
        Ok(Message { subject, body, trailers })
    }
}

/// The file changes of a unified diff (`diff -u`/`git diff` output, -p1 paths);
/// leading text (a description) is skipped. Each hunk is read by its header's
/// line counts, so an empty line inside it is a context line whose space an
/// editor stripped.
pub fn parse_diff(path: &Path, text: &str) -> Result<Vec<FileDiff>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = |i: usize| format!("{}:{}:1", path.display(), i + 1);
    let mut out: Vec<FileDiff> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if let (Some(old), Some(new)) = (l.strip_prefix("--- "), lines.get(i + 1).and_then(|n| n.strip_prefix("+++ ")))
        {
            let name = |s: &str| s.split('\t').next().unwrap_or("").to_string();
            let (old, new) = (name(old), name(new));
            let Some(p) = new.strip_prefix("b/") else {
                return Err(format!("{}: expected a `+++ b/PATH` line (-p1 paths)", at(i + 1)));
            };
            out.push(FileDiff { path: p.to_string(), new: old == "/dev/null", hunks: String::new() });
            i += 2;
            continue;
        }
        if let (Some(f), true) = (out.last_mut(), l.starts_with("@@ -")) {
            let counts = |s: &str| -> Option<usize> {
                let r = s.split(',').nth(1).unwrap_or("1");
                r.parse().ok()
            };
            let mut parts = l.split_whitespace().skip(1);
            let (Some(mut old_n), Some(mut new_n)) = (parts.next().and_then(counts), parts.next().and_then(counts))
            else {
                return Err(format!("{}: a hunk header `@@ -A,B +C,D @@` was expected", at(i)));
            };
            f.hunks.push_str(l);
            f.hunks.push('\n');
            i += 1;
            while old_n > 0 || new_n > 0 {
                let Some(&h) = lines.get(i) else {
                    return Err(format!("{}: the hunk ends early", at(i)));
                };
                match h.chars().next() {
                    None | Some(' ') => {
                        old_n = old_n.saturating_sub(1);
                        new_n = new_n.saturating_sub(1);
                    }
                    Some('-') => old_n = old_n.saturating_sub(1),
                    Some('+') => new_n = new_n.saturating_sub(1),
                    Some('\\') => {}
                    _ => return Err(format!("{}: a hunk line must start with ' ', '+' or '-'", at(i))),
                }
                f.hunks.push_str(if h.is_empty() { " " } else { h });
                f.hunks.push('\n');
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    if out.is_empty() {
        return Err(format!("{}: not a unified diff (no `--- a/PATH` / `+++ b/PATH` lines)", path.display()));
    }
    Ok(out)
}

/// The lines a new file adds, as its diff.
pub fn new_file(path: &str, content: &str) -> FileDiff {
    let n = content.lines().count();
    let mut hunks = format!("@@ -0,0 +1,{n} @@\n");
    for l in content.lines() {
        let _ = writeln!(hunks, "+{l}");
    }
    FileDiff { path: path.to_string(), new: true, hunks }
}

/// `lines` inserted into `old` after the first line equal to `anchor`, with
/// three lines of context; `None` if no line is `anchor`.
pub fn insert_after(path: &str, old: &str, anchor: &str, lines: &[String]) -> Option<FileDiff> {
    let at = old.lines().position(|l| l == anchor)? + 1;
    Some(insert_at(path, old, at, lines))
}

/// `lines` inserted into `old` before its line `at` (0-based), with three
/// lines of context.
pub fn insert_at(path: &str, old: &str, at: usize, lines: &[String]) -> FileDiff {
    let file: Vec<&str> = old.lines().collect();
    let at = at.min(file.len());
    let from = at.saturating_sub(3);
    let to = (at + 3).min(file.len());
    let ctx = to - from;
    let mut hunks = format!("@@ -{},{ctx} +{},{} @@\n", from + 1, from + 1, ctx + lines.len());
    for l in &file[from..at] {
        let _ = writeln!(hunks, " {l}");
    }
    for l in lines {
        let _ = writeln!(hunks, "+{l}");
    }
    for l in &file[at..to] {
        let _ = writeln!(hunks, " {l}");
    }
    FileDiff { path: path.to_string(), new: false, hunks }
}

/// The `git format-patch` text of one commit.
pub struct FormatPatch<'a> {
    /// `[PATCH 1/2]`, `[PATCH 6.12.y]`, ...
    pub prefix: &'a str,
    pub message: &'a Message,
    /// `Name <email>`: author and sign-off.
    pub author: &'a str,
    /// RFC 2822 date.
    pub date: &'a str,
    pub files: &'a [FileDiff],
}

impl FormatPatch<'_> {
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n");
        let _ = writeln!(s, "From: {}", self.author);
        let _ = writeln!(s, "Date: {}", self.date);
        let _ = writeln!(s, "Subject: {} {}", self.prefix, self.message.subject);
        s.push('\n');
        if !self.message.body.is_empty() {
            s.push_str(&self.message.body);
            s.push_str("\n\n");
        }
        for t in &self.message.trailers {
            let _ = writeln!(s, "{t}");
        }
        let _ = writeln!(s, "Signed-off-by: {}", self.author);
        s.push_str("---\n");
        let width = self.files.iter().map(|f| f.path.len()).max().unwrap_or(0);
        let (mut adds, mut dels) = (0, 0);
        let most = self.files.iter().map(|f| f.counts().0 + f.counts().1).max().unwrap_or(0).max(1);
        for f in self.files {
            let (a, d) = f.counts();
            adds += a;
            dels += d;
            // The bar scaled to at most 50 columns, as git does for narrow stats.
            let scale = |n: usize| if most <= 50 { n } else { (n * 50).div_ceil(most) };
            let _ = writeln!(s, " {:<width$} | {:>3} {}{}", f.path, a + d, "+".repeat(scale(a)), "-".repeat(scale(d)));
        }
        let plural = |n: usize, one: &str, many: &str| if n == 1 { one.to_string() } else { many.to_string() };
        let _ = write!(s, " {} {} changed", self.files.len(), plural(self.files.len(), "file", "files"));
        if adds > 0 {
            let _ = write!(s, ", {adds} {}", plural(adds, "insertion(+)", "insertions(+)"));
        }
        if dels > 0 {
            let _ = write!(s, ", {dels} {}", plural(dels, "deletion(-)", "deletions(-)"));
        }
        s.push('\n');
        for f in self.files.iter().filter(|f| f.new) {
            let _ = writeln!(s, " create mode 100644 {}", f.path);
        }
        s.push('\n');
        for f in self.files {
            let _ = writeln!(s, "diff --git a/{p} b/{p}", p = f.path);
            if f.new {
                s.push_str("new file mode 100644\n--- /dev/null\n");
            } else {
                let _ = writeln!(s, "--- a/{}", f.path);
            }
            let _ = writeln!(s, "+++ b/{}", f.path);
            s.push_str(&f.hunks);
        }
        let _ = write!(s, "-- \nptediff {}\n\n", env!("CARGO_PKG_VERSION"));
        s
    }
}

/// A file name for a patch: `0001-fs-proc-task_mmu-write-protect-....patch`.
pub fn file_name(n: usize, subject: &str) -> String {
    let mut slug = String::new();
    for c in subject.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches(['-', '.']).chars().take(52).collect();
    format!("{n:04}-{}.patch", slug.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_splits_subject_body_and_trailers() {
        let m = Message::parse(
            Path::new("m"),
            "mm: fix it\n\nWhat breaks.\nWhy.\n\nThe fix.\n\nFixes: 0123456789ab (\"mm: x\")\nCc: stable@vger.kernel.org\n",
        )
        .unwrap();
        assert_eq!(m.subject, "mm: fix it");
        assert_eq!(m.body, "What breaks.\nWhy.\n\nThe fix.");
        assert_eq!(m.trailers, vec!["Fixes: 0123456789ab (\"mm: x\")", "Cc: stable@vger.kernel.org"]);
        assert!(Message::parse(Path::new("m"), "subject\nno blank line\n").unwrap_err().contains("m:2:1"));
    }

    #[test]
    fn insertion_hunk_has_context_and_counts() {
        let old = "a\nb\nc\nanchor\nd\ne\nf\ng\n";
        let d = insert_after("x/Makefile", old, "anchor", &["new".into()]).unwrap();
        assert_eq!(d.hunks, "@@ -2,6 +2,7 @@\n b\n c\n anchor\n+new\n d\n e\n f\n");
        assert!(insert_after("x", old, "missing", &[]).is_none());
    }

    #[test]
    fn diff_parse_skips_the_description() {
        let text = "a description\n\n--- a/mm/x.c\n+++ b/mm/x.c\n@@ -1,2 +1,3 @@\n a\n+b\n c\n";
        let f = parse_diff(Path::new("p"), text).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].path, "mm/x.c");
        assert_eq!(f[0].counts(), (1, 0));
        assert!(parse_diff(Path::new("p"), "no diff here\n").unwrap_err().starts_with("p: not a unified diff"));
    }

    #[test]
    fn file_names_are_git_like() {
        assert_eq!(file_name(1, "fs/proc/task_mmu: write-protect it"), "0001-fs-proc-task_mmu-write-protect-it.patch");
    }
}
