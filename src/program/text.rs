//! Program text: one op per line, `#` comments, processes named `p0..p2`
//! (`p1 = fork(p0)` names the child), pages and lengths in decimal.
//!
//! ```text
//! # thread scenario: soft-dirty lost across a VMA merge
//! mmap(p0, 0, 1, rw-, memfd, shared, 0)
//! write(p0, 0)
//! clear_refs(p0)
//! mmap(p0, 1, 1, rw-, memfd, shared, 1)
//! migrate(p0, 0)
//! ```
//!
//! Printing and parsing are exact inverses on every program; each argument's
//! text form is its domain's ([`super::args`]).

use std::fmt::{self, Write as _};

use crate::op::{Op, OpKind, Program, OP_TABLE};

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut pr = ArgPrinter::default();
        self.print_args(&mut pr);
        if let Some(l) = &pr.lhs {
            write!(f, "{l} = ")?;
        }
        write!(f, "{}({})", self.name(), pr.args)
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

/// Collects an op's printed arguments (`, `-separated) and its left-hand side.
#[derive(Default)]
pub struct ArgPrinter {
    args: String,
    lhs: Option<String>,
}

impl ArgPrinter {
    /// One argument.
    pub fn arg(&mut self, v: impl fmt::Display) {
        if !self.args.is_empty() {
            self.args.push_str(", ");
        }
        let _ = write!(self.args, "{v}");
    }
    /// What the op assigns (`p1 = fork(p0)`).
    pub fn lhs(&mut self, v: impl fmt::Display) {
        self.lhs = Some(v.to_string());
    }
}

/// A parse error at a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// A token with its 1-based column.
#[derive(Clone, Copy, Debug)]
pub struct Tok<'a> {
    pub s: &'a str,
    pub col: usize,
}

/// The arguments of one op line, taken in order by the fields' domains.
pub struct ArgParser<'a> {
    line: usize,
    pub name: Tok<'a>,
    kind: OpKind,
    lhs: Option<Tok<'a>>,
    args: Vec<Tok<'a>>,
    next: usize,
    close_col: usize,
}

impl<'a> ArgParser<'a> {
    /// An error at `col` of this line.
    pub fn error(&self, col: usize, msg: impl Into<String>) -> ParseError {
        ParseError { line: self.line, col, msg: msg.into() }
    }

    fn arity_error(&self, col: usize) -> ParseError {
        let info = self.kind.info();
        let (lo, hi) = info.arity;
        let n = if lo == hi { lo.to_string() } else { format!("{lo} to {hi}") };
        let shape: Vec<&str> = info.shape.iter().copied().filter(|s| *s != "child").collect();
        self.error(
            col,
            format!(
                "{} takes {n} argument(s): {}({}), got {}",
                info.name,
                info.name,
                shape.join(", "),
                self.args.len()
            ),
        )
    }

    /// The next argument, or an error naming what the op takes.
    pub fn take(&mut self) -> Result<Tok<'a>, ParseError> {
        let t = self.args.get(self.next).copied().ok_or_else(|| self.arity_error(self.close_col))?;
        self.next += 1;
        Ok(t)
    }

    /// The next argument without taking it.
    pub fn peek(&self) -> Option<Tok<'a>> {
        self.args.get(self.next).copied()
    }

    /// The left-hand side (`p1` of `p1 = fork(p0)`), taken once.
    pub fn take_lhs(&mut self) -> Option<Tok<'a>> {
        self.lhs.take()
    }
}

fn trim_tok(s: &str, col: usize) -> Tok<'_> {
    let lead = s.len() - s.trim_start().len();
    Tok { s: s.trim(), col: col + lead }
}

/// Parse one non-empty, comment-stripped line.
fn parse_line(line_no: usize, line: &str) -> Result<Op, ParseError> {
    let err = |col: usize, msg: String| Err(ParseError { line: line_no, col, msg });
    // Optional `pN =` (fork's child).
    let (lhs, rhs, rhs_col) = match line.find('=') {
        Some(i) => (Some(trim_tok(&line[..i], 1)), &line[i + 1..], i + 2),
        None => (None, line, 1),
    };
    let Some(open) = rhs.find('(') else {
        let t = trim_tok(rhs, rhs_col);
        return err(t.col, format!("expected `name(args)`, found `{}`", t.s));
    };
    let name = trim_tok(&rhs[..open], rhs_col);
    let Some(kind) = OpKind::from_name(name.s) else {
        let names: Vec<&str> = OP_TABLE.iter().map(|r| r.name).collect();
        return err(name.col, format!("unknown operation `{}` (known: {})", name.s, names.join(", ")));
    };
    let after = &rhs[open + 1..];
    let Some(close) = after.rfind(')') else {
        return err(rhs_col + rhs.len(), "missing `)`".into());
    };
    let trailing = trim_tok(&after[close + 1..], rhs_col + open + 1 + close + 1);
    if !trailing.s.is_empty() {
        return err(trailing.col, format!("unexpected `{}` after `)`", trailing.s));
    }
    let inner = &after[..close];
    let inner_col = rhs_col + open + 1;
    let mut args = Vec::new();
    if !inner.trim().is_empty() {
        let mut off = 0;
        for piece in inner.split(',') {
            let t = trim_tok(piece, inner_col + off);
            if t.s.is_empty() {
                return err(t.col, "empty argument".into());
            }
            args.push(t);
            off += piece.len() + 1;
        }
    }
    let mut ap = ArgParser { line: line_no, name, kind, lhs, args, next: 0, close_col: inner_col + close };
    let op = kind.parse_args(&mut ap)?;
    if let Some(l) = ap.lhs {
        return err(l.col, format!("only fork assigns a result (`p1 = fork(p0)`), found `{} =`", l.s));
    }
    if let Some(t) = ap.peek() {
        return Err(ap.arity_error(t.col));
    }
    Ok(op)
}

/// Parse program text. Errors carry 1-based line and column.
pub fn parse(text: &str) -> Result<Program, ParseError> {
    let mut ops = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find('#') {
            Some(c) => &raw[..c],
            None => raw,
        };
        if line.trim().is_empty() {
            continue;
        }
        ops.push(parse_line(i + 1, line)?);
    }
    Ok(Program { ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        let text = "\
mmap(p0, 0, 2, rw-, memfd, shared, 0)   # a comment
mmap(p0, 4, 1, r-x, anon)
mmap(p0, 6, 1, rw-, shared-anon)
p1 = fork(p0, event_fork)
p2 = fork(p1)
madvise(p0, 0, 1, MADV_DONTNEED)
swapoff()
";
        let p = parse(text).unwrap();
        assert_eq!(p.ops.len(), 7);
        assert_eq!(parse(&p.to_string()).unwrap(), p);
        assert_eq!(p.ops[3], Op::Fork { parent: 0, child: 1, event_fork: true });
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("write(p0, 1)\nwrite(p0, 99)\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 11));
        let e = parse("frobnicate(p0)").unwrap_err();
        assert_eq!((e.line, e.col), (1, 1));
        assert!(e.msg.contains("unknown operation"));
        let e = parse("  mprotect(p0, 0, 1, rwz)").unwrap_err();
        assert_eq!((e.line, e.col), (1, 22));
        let e = parse("fork(p0)").unwrap_err();
        assert!(e.msg.contains("names its child"));
        let e = parse("read(p0, 1").unwrap_err();
        assert!(e.msg.contains("missing `)`"));
        let e = parse("read(p7, 1)").unwrap_err();
        assert_eq!((e.line, e.col), (1, 6));
        let e = parse("read(p0)").unwrap_err();
        assert!(e.msg.contains("takes 2 argument"), "{}", e.msg);
        let e = parse("read(p0, 1, 2)").unwrap_err();
        assert_eq!((e.line, e.col, e.msg.contains("takes 2 argument")), (1, 13, true), "{}", e.msg);
        let e = parse("p1 = read(p0, 1)").unwrap_err();
        assert!(e.msg.contains("only fork assigns"), "{}", e.msg);
        let e = parse("p1 = fork(p0, 3)").unwrap_err();
        assert!(e.msg.contains("expected event_fork"), "{}", e.msg);
        let e = parse("mmap(p0, 0, 1, rw-, memfd)").unwrap_err();
        assert!(e.msg.contains("mmap takes 5 to 7 argument"), "{}", e.msg);
    }
}
